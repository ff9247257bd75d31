"""The echo task (tasks/echo.py) on FakeClock + FakeRig: the output follows the poke, trials count pokes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autopilot_pilot.fakes import FakeRig
from autopilot_tasks import registry
from autopilot_tasks.task import Input, Output, TaskError
from autopilot_tasks.tasks.echo import Echo

ROOT = Path(__file__).resolve().parent.parent


def test_echo_needs_only_what_the_sim_rig_has() -> None:
    gpio = yaml.safe_load((ROOT / 'launch' / 'params' / 'rig_sim.yaml').read_text())['/**/gpio']['ros__parameters']
    hw = Echo.hardware()
    assert isinstance(hw['poke'], Input) and hw['poke'].device in gpio['inputs']
    assert isinstance(hw['out'], Output) and hw['out'].device in gpio['outputs']
    assert gpio[f'devices.{hw["out"].device}.kind'] == hw['out'].kind == 'led'


def test_echo_is_registered() -> None:
    assert registry.lookup('echo') is Echo


def test_output_follows_the_poke_at_once() -> None:
    rig = FakeRig(Echo)
    rig.start()
    assert rig.stage == 'mirror' and rig.hw.calls == []
    rig.advance(0.25)
    rig.edge('poke', True)
    assert rig.hw.calls == [('set', 'out', True)] and rig.hw.times == [250_000_000]
    rig.advance(0.1)
    rig.edge('poke', False)
    assert rig.hw.calls == [('set', 'out', True), ('set', 'out', False)]
    assert rig.hw.times[1] == 350_000_000  # in the same callback as the edge: no timer in between
    assert rig.trials == [] and rig.errors == []


def test_a_trial_is_n_pokes_counted_on_the_way_out() -> None:
    rig = FakeRig(Echo, {'pokes_per_trial': 3})
    rig.start()
    for _ in range(7):
        rig.poke('poke', hold_s=0.02)
        rig.advance(0.03)
    assert not rig.errors
    assert [t.fields for t in rig.trials] == [{'n_pokes': 3}, {'n_pokes': 3}]
    assert [t.number for t in rig.trials] == [1, 2]
    assert rig.hw.levels == {'out': False}  # every trial ends with the output low
    levels = [c[2] for c in rig.hw.of('set')]
    assert levels == [True, False] * 7
    assert rig.task.n_pokes == 1 and rig.stage == 'mirror'  # trial 3 has one poke so far


def test_mapped_to_another_input_and_active_high() -> None:
    rig = FakeRig(Echo, devices={'poke': 'lick_1'})
    rig.start()
    rig.runner.handle_gpio('poke_center', False, 1, 1)  # not the mapped device: ignored
    assert rig.hw.calls == []
    rig.runner.handle_gpio('lick_1', False, 2, 2)  # pull-up input: low is "in"
    rig.runner.handle_gpio('lick_1', True, 3, 3)
    assert rig.hw.of('set') == [('set', 'out', True), ('set', 'out', False)]


def test_pokes_per_trial_is_checked() -> None:
    assert Echo.validate() == {'pokes_per_trial': 10}
    with pytest.raises(TaskError, match="pokes_per_trial.*out of range"):
        Echo.validate({'pokes_per_trial': 0})
    assert Echo.score({'n_pokes': 4}) is None
