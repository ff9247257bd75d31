"""The pilot across processes: whole simulated rigs (sim GPIO, null sound, virtual subject, pilot) run
sessions while the test plays the terminal (session goals, trial store with acks).

Every rig process is an installed executable on this test's private domain. The task and the subject are
seeded, and the subject draws the same random numbers per decision whatever the timing, so a run is
reproducible; tolerances are still stated against the model, not tuned to a seed.
"""

from __future__ import annotations

import math
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from autopilot_msgs.action import RunSession
from autopilot_msgs.msg import PilotStatus, StepChange, TrialAck, TrialData
from autopilot_msgs.srv import LoadProtocol, SetTaskParameters
from conftest import call, settle
from rcl_interfaces.srv import SetParameters
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message
from std_srvs.srv import Trigger

from autopilot_core import qos, trial_fields
from autopilot_core.executors import spin, spin_until_future
from autopilot_core.names import host_namespace
from autopilot_pilot.journal import Journal
from autopilot_pilot.subject import SubjectParams, binomial_tolerance, expected_accuracy

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / 'install'
GPIO = str(LIB / 'autopilot_hardware' / 'lib' / 'autopilot_hardware' / 'gpio')
SOUND = str(LIB / 'autopilot_hardware' / 'lib' / 'autopilot_hardware' / 'sound')
PILOT = str(LIB / 'autopilot_pilot' / 'lib' / 'autopilot_pilot' / 'pilot')
SUBJECT = str(LIB / 'autopilot_pilot' / 'lib' / 'autopilot_pilot' / 'subject_sim')
RIG_PARAMS = ROOT / 'launch' / 'params' / 'rig_sim.yaml'
CALIBRATION = ROOT / 'launch' / 'params' / 'calibration_sim.jsonl'

# A fast 2AFC (about 0.3 s a trial) and a fast subject; the response window stays generous so that a
# loaded machine delays trials but never turns a response into a miss. The subject pokes the centre
# 100 ms after its response, and again 200 ms later if no tone came (the rig was still in its ITI).
FAST_TASK = {'iti_s': 0.05, 'punish_timeout_s': 0.1, 'response_window_s': 3.0, 'tone_ms': 30.0,
             'noise_ms': 30.0}
FAST_SUBJECT = {'rt_mean_ms': 60.0, 'rt_sd_ms': 20.0, 'rt_min_ms': 20.0, 'center_delay_mean_ms': 100.0,
                'center_delay_sd_ms': 10.0, 'poke_hold_ms': 10.0, 'stimulus_wait_ms': 200.0}


def take_trial(owner: Any, data: bytes) -> TrialData:
    """Count one received copy of a trial in ``owner``'s ``copies``, keep its first ``raw`` bytes and message
    (``trials``), by (session, trial number); a resent copy must be byte-identical."""
    msg = deserialize_message(data, TrialData)
    key = (msg.session_id, msg.trial_number)
    owner.copies[key] = owner.copies.get(key, 0) + 1
    if key in owner.raw:
        assert owner.raw[key] == data, f'trial {key} resent with different bytes'
    owner.raw.setdefault(key, data)
    owner.trials.setdefault(key, msg)
    return msg


def ros_args(params: dict[str, Any]) -> list[str]:
    return [a for k, v in params.items() for a in ('-p', f'{k}:={v}')]


def start_rig(procs, tmp_path: Path, ns: str, *, subject: dict[str, Any] | None = None,
              pilot: dict[str, Any] | None = None, with_subject: bool = True, pilot_ns: str = '') -> dict[str, Any]:
    """gpio, sound and subject in /<ns>; the pilot there too, or in /<pilot_ns> driving them remotely."""
    calibration = tmp_path / f'{ns}-calibration.jsonl'
    shutil.copy(CALIBRATION, calibration)
    journal = tmp_path / f'{ns}-journal.sqlite3'
    rig = {'journal': journal, 'ns': ns}
    rig['gpio'] = procs([GPIO, '--ros-args', '--params-file', str(RIG_PARAMS), '-p', f'calibration_file:={calibration}',
                         '-r', f'__ns:=/{ns}'], name=f'{ns}-gpio')
    rig['sound'] = procs([SOUND, '--ros-args', '-p', 'backend:=null', '-r', f'__ns:=/{ns}'], name=f'{ns}-sound')
    remote = {'hardware_namespace': f'/{ns}'} if pilot_ns else {}
    rig['pilot_cmd'] = [PILOT, '--ros-args', '-r', f'__ns:=/{pilot_ns or ns}', '-p', f'journal_path:={journal}',
                        *ros_args({'seed': 7, 'resend_interval_s': 0.5, **remote, **(pilot or {})})]
    rig['pilot'] = procs(rig['pilot_cmd'], name=f'{ns}-pilot')
    if with_subject:
        rig['subject'] = procs([SUBJECT, '--ros-args', '-r', f'__ns:=/{ns}',
                                *ros_args({'seed': 11, **FAST_SUBJECT, **(subject or {})})], name=f'{ns}-subject')
    rig['pilot'].wait_for_output('ready')
    return rig


def goal(subject: str = 'mouse1', *, task: str = '', protocol: str = '', step: int = 0, max_trials: int = 0,
         max_duration_s: float = 0.0, **params: Any) -> RunSession.Goal:
    return RunSession.Goal(subject=subject, task=task, protocol=protocol, step=step, max_trials=max_trials,
                           max_duration_s=max_duration_s,
                           parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in params.items()])


class Terminal:
    """The test's terminal for one pilot: session goals, trials stored once by (session, number), acks."""

    def __init__(self, node: Node, ns: str, *, ack: bool = True) -> None:
        self.node = node
        self.ns = ns
        self.ack = ack
        self.trials: dict[tuple[str, int], TrialData] = {}
        self.raw: dict[tuple[str, int], bytes] = {}  # as received (raw subscription), to compare bytes
        self.received = 0
        self.copies: dict[tuple[str, int], int] = {}  # how many times each trial arrived
        self.statuses: list[PilotStatus] = []
        self.steps: list[StepChange] = []
        self.feedback: list[RunSession.Feedback] = []
        self.client = ActionClient(node, RunSession, f'/{ns}/session')
        self.ack_pub = node.create_publisher(TrialAck, f'/{ns}/trial_acks', qos.TRIALS)
        self.trial_sub = node.create_subscription(TrialData, f'/{ns}/trials', self.on_trial, qos.TRIALS, raw=True)
        node.create_subscription(PilotStatus, f'/{ns}/status', self.statuses.append, qos.STATUS)
        node.create_subscription(StepChange, f'/{ns}/step_changes', self.on_step, qos.TRIALS)

    def on_trial(self, data: bytes) -> None:
        msg = take_trial(self, data)
        self.received += 1
        if self.ack:
            self.ack_pub.publish(TrialAck(pilot=msg.pilot, session_id=msg.session_id,
                                          trial_numbers=[msg.trial_number]))

    def on_step(self, msg: StepChange) -> None:
        if not any((s.session_id, s.seq) == (msg.session_id, msg.seq) for s in self.steps):
            self.steps.append(msg)
        if self.ack:
            self.ack_pub.publish(TrialAck(pilot=msg.pilot, session_id=msg.session_id, step_seqs=[msg.seq]))

    def spin_until(self, condition, timeout: float, what: str) -> None:
        assert spin(self.node, self.node.executor_, timeout_sec=timeout, until=condition), what

    def send(self, g: RunSession.Goal, timeout: float = 20.0):
        assert self.client.wait_for_server(timeout_sec=timeout), f'/{self.ns}/session not available'
        settle(self.node, self.client)
        self.spin_until(lambda: self.trial_sub.get_publisher_count() >= 1, timeout, 'trials not matched')
        future = self.client.send_goal_async(g, feedback_callback=lambda f: self.feedback.append(f.feedback))
        assert spin_until_future(self.node, future, timeout, self.node.executor_), 'no goal response'
        return future.result()

    def run(self, g: RunSession.Goal, timeout: float) -> RunSession.Result:
        handle = self.send(g)
        assert handle.accepted, f'goal rejected: {self.statuses[-1].message if self.statuses else "?"}'
        future = handle.get_result_async()
        assert spin_until_future(self.node, future, timeout, self.node.executor_), 'session did not end in time'
        return future.result().result

    def session(self, session_id: str) -> list[dict[str, Any]]:
        """The stored trials of one session as field dicts (plus number and step), in order."""
        rows = sorted((k[1], m) for k, m in self.trials.items() if k[0] == session_id)
        return [{'number': n, 'step': m.step, **trial_fields.to_dict(m.fields)} for n, m in rows]


def journal_of(rig: dict[str, Any]) -> Journal:
    """The pilot's journal, once the pilot has stopped (it holds the file exclusively while it runs)."""
    assert rig['pilot'].stop() == 0, rig['pilot'].output()
    return Journal(rig['journal'])


def test_2afc_accuracy_matches_the_subject_model(procs, node, tmp_path):
    model = SubjectParams(slope=2.0, lapse=0.1, bias=0.0)
    rig = start_rig(procs, tmp_path, 'rig1', subject={'slope': model.slope, 'lapse': model.lapse})
    term = Terminal(node, 'rig1')
    n = 120  # accuracy within 4 binomial SDs (+-0.15 here); the model alone is checked on 20,000 draws in test_subject
    result = term.run(goal(task='2afc', max_trials=n, correction_trials=False, bias_correction=False,
                           **FAST_TASK), timeout=240)
    assert result.success and result.n_trials == n, result.message
    trials = term.session(result.session_id)
    assert [t['number'] for t in trials] == list(range(1, n + 1)), 'a trial missing or out of order'
    assert {t['response'] for t in trials} <= {'left', 'right'}, 'a response turned into a miss'
    expected = expected_accuracy(1.0, model)  # +-1 stimuli, symmetric subject
    accuracy = sum(t['correct'] for t in trials) / n
    assert abs(accuracy - expected) <= binomial_tolerance(expected, n), (accuracy, expected)
    assert result.fraction_correct == pytest.approx(accuracy)
    # Response times come from GPIO ticks: the subject's RT distribution (>= rt_min) shows through.
    rts = [t['rt_ms'] for t in trials]
    assert all(math.isfinite(r) for r in rts) and min(rts) >= FAST_SUBJECT['rt_min_ms'] - 1.0
    assert 40.0 <= sorted(rts)[n // 2] <= 150.0, sorted(rts)[n // 2]
    assert term.feedback[-1].trial_count == n
    # Every trial was journalled and acknowledged; the subject got its water (a valve opened per correct).
    journal = journal_of(rig)
    stats = journal.stats(result.session_id)
    assert (stats.trials, stats.unacked_trials) == (n, 0)
    assert journal.session(result.session_id).state == 'ended'
    rig['subject'].stop()
    rewards = int(rig['subject'].output().split('rewards ')[-1].split(' ')[0])
    assert rewards == sum(t['correct'] for t in trials)


def test_bias_correction_reduces_the_side_bias_of_a_biased_subject(procs, node, tmp_path):
    # A left-biased subject (p(right | right tone) 0.64, p(right | left tone) 0.03). Both rigs use the same
    # task and subject seeds, so their random draws pair up trial by trial (common random numbers): bias
    # correction can only turn a left target into a right one, never the reverse, while the subject's
    # fraction of right responses stays below 0.5. Model expectation over 200 trials: 0.33 right
    # responses without, 0.39 with (paired difference 0.061 +- 0.019 in 500 simulated seeds).
    subject = {'bias': 0.8, 'slope': 3.0, 'lapse': 0.05}
    rigs = {ns: start_rig(procs, tmp_path, ns, subject=subject) for ns in ('off', 'on')}
    terms = {ns: Terminal(node, ns) for ns in rigs}
    n = 200
    handles = {ns: terms[ns].send(goal(task='2afc', max_trials=n, correction_trials=False,
                                       bias_correction=ns == 'on', bias_limit=0.2, **FAST_TASK)) for ns in rigs}
    futures = {ns: h.get_result_async() for ns, h in handles.items()}
    assert spin(node, node.executor_, timeout_sec=300, until=lambda: all(f.done() for f in futures.values()))
    right, targets = {}, {}
    for ns, f in futures.items():
        result = f.result().result
        assert result.success and result.n_trials == n, (ns, result.message)
        trials = terms[ns].session(result.session_id)
        assert len(trials) == n
        right[ns] = sum(t['response'] == 'right' for t in trials) / n
        targets[ns] = sum(t['target'] == 'right' for t in trials) / n
    # The mechanism: more right targets for a subject that goes left (expected 0.60 vs 0.50) ...
    assert targets['on'] > targets['off'] + 0.03, targets
    # ... and the outcome: its responses are less one-sided (expected |bias| 0.11 vs 0.17).
    bias = {ns: abs(r - 0.5) for ns, r in right.items()}
    assert bias['on'] < bias['off'] - 0.01, (bias, targets)


def test_protocol_graduates_between_trials_and_records_why(procs, node, tmp_path):
    rig = start_rig(procs, tmp_path, 'rig1')
    term = Terminal(node, 'rig1')
    text = (
        'name: quick\n'
        'steps:\n'
        '  - name: free water\n'
        '    task: free_water\n'
        '    parameters: {iti_s: 0.05, mode: alternate}\n'
        '    graduation: {trials: 5}\n'
        '  - name: discrimination\n'
        '    task: 2afc\n'
        '    parameters: {iti_s: 0.05, punish_timeout_s: 0.1, tone_ms: 30.0, noise_ms: 30.0}\n'
    )
    load = node.create_client(LoadProtocol, '/rig1/load_protocol')
    res = call(node, load, LoadProtocol.Request(name='quick', yaml_text=text))
    assert res.success and res.n_steps == 2, res.message
    # Free water needs side pokes without a stimulus: the subject starts in free-water mode ...
    set_mode = node.create_client(SetParameters, '/rig1/subject_sim/set_parameters')
    call(node, set_mode, SetParameters.Request(parameters=[
        Parameter('mode', value='free_water').to_parameter_msg(),
        Parameter('free_water_interval_mean_ms', value=60.0).to_parameter_msg(),
        Parameter('free_water_interval_sd_ms', value=20.0).to_parameter_msg()]))
    handle = term.send(goal(protocol='quick', max_trials=9))
    assert handle.accepted
    # ... and answers tones once the pilot has moved it to the 2AFC step.
    term.spin_until(lambda: term.steps, 60, 'no step change')
    call(node, set_mode, SetParameters.Request(parameters=[Parameter('mode', value='2afc').to_parameter_msg()]))
    future = handle.get_result_async()
    assert spin_until_future(node, future, 60, node.executor_)
    result = future.result().result
    assert result.success and result.n_trials == 9 and result.final_step == 1, result.message
    [change] = term.steps
    assert (change.from_step, change.to_step, change.after_trial) == (0, 1, 5)
    assert (change.from_step_name, change.to_step_name) == ('free water', 'discrimination')
    assert change.reason == '5 trials >= 5 in this step'
    trials = term.session(result.session_id)
    assert [t['step'] for t in trials] == [0] * 5 + [1] * 4
    assert [m.task for _, m in sorted((k[1], m) for k, m in term.trials.items())] == ['free_water'] * 5 + ['2afc'] * 4
    journal = journal_of(rig)
    [step] = journal.steps(result.session_id)
    assert (step.seq, step.after_trial, step.to_step, step.reason, step.acked) == (1, 5, 1, change.reason, True)


def test_sigkill_of_the_pilot_loses_and_duplicates_no_trial(procs, node, tmp_path):
    rig = start_rig(procs, tmp_path, 'rig1')
    # The terminal is "away" (no acks) for the first part: what the pilot published is only in its journal.
    term = Terminal(node, 'rig1', ack=False)
    handle = term.send(goal(task='2afc', **FAST_TASK))
    assert handle.accepted
    term.spin_until(lambda: len(term.trials) >= 12, 60, 'trials did not arrive')
    rig['pilot'].signal(signal.SIGKILL)
    rig['pilot'].wait()
    published = set(term.trials)
    # Unacked trials were resent on a backoff (0.5, 1, 2, 4 s ...), not every interval: a listener that never
    # acks (a plain `topic echo`) sees each trial a few times, not once per interval.
    assert 2 <= max(term.copies.values()) <= 5, term.copies
    session_id = next(iter(published))[0]
    # A trial can be journalled and killed before it was published: the restarted pilot sends it then.
    term.ack = True
    received_before = term.received
    rig['pilot'] = procs(rig['pilot_cmd'], name='rig1-pilot-restarted')
    rig['pilot'].wait_for_output('was interrupted (pilot restart)')
    term.spin_until(lambda: term.received > received_before + len(published) - 1, 30, 'no resend after restart')
    # Acks sent before the restarted pilot's ack subscription matched are lost; its resends (every 0.5 s)
    # bring those trials back and they are acked again. A few intervals settle it.
    spin(node, node.executor_, timeout_sec=3.0)
    journal = journal_of(rig)
    journalled = {(t.session_id, t.trial_number) for t in journal.trials(session_id)}
    assert published <= journalled, 'a published trial is not in the journal'
    assert set(term.trials) == journalled, 'the terminal is missing journalled trials'
    numbers = sorted(n for _, n in journalled)
    assert numbers == list(range(1, len(numbers) + 1)), 'trial numbers have a gap or a repeat'
    assert journal.stats(session_id).unacked_trials == 0
    assert journal.session(session_id).state == 'interrupted'
    # What the terminal received (first copies and resends alike, checked byte for byte in on_trial) is the
    # journal's trial. DDS pads the CDR stream to 4 bytes on the wire, so compare the decoded messages.
    for t in journal.trials(session_id):
        assert deserialize_message(t.payload, TrialData) == term.trials[(session_id, t.trial_number)]


def test_pause_resume_and_parameter_changes_between_trials(procs, node, tmp_path):
    start_rig(procs, tmp_path, 'rig1')
    term = Terminal(node, 'rig1')
    handle = term.send(goal(task='2afc', **FAST_TASK))
    assert handle.accepted
    term.spin_until(lambda: len(term.trials) >= 3, 30, 'no trials')
    set_params = node.create_client(SetTaskParameters, '/rig1/set_task_parameters')
    bad = call(node, set_params, SetTaskParameters.Request(parameters=[Parameter('reward_ul', value=99.0).to_parameter_msg()]))
    assert not bad.success and "parameter 'reward_ul'" in bad.message and '[0.5, 50.0] uL' in bad.message
    good = call(node, set_params, SetTaskParameters.Request(parameters=[Parameter('reward_ul', value=3.0).to_parameter_msg()]))
    assert good.success, good.message
    pause = call(node, node.create_client(Trigger, '/rig1/pause'), Trigger.Request())
    assert pause.success
    term.spin_until(lambda: term.statuses and term.statuses[-1].state == PilotStatus.STATE_PAUSED, 10, 'not paused')
    spin(node, node.executor_, timeout_sec=0.3)  # the trial running at the pause finishes, then nothing more
    spin(node, node.executor_, timeout_sec=0.5)
    held = len(term.trials)
    spin(node, node.executor_, timeout_sec=1.5)
    assert len(term.trials) == held, 'trials went on while paused'
    assert call(node, node.create_client(Trigger, '/rig1/resume'), Trigger.Request()).success
    term.spin_until(lambda: len(term.trials) >= held + 3, 30, 'no trials after resume')
    cancel = handle.cancel_goal_async()
    assert spin_until_future(node, cancel, 10, node.executor_)
    future = handle.get_result_async()
    assert spin_until_future(node, future, 20, node.executor_)
    assert future.result().result.success
    rewarded = [trial_fields.to_dict(m.fields)['reward_given_ul'] for (_, n), m in sorted(term.trials.items())
                if trial_fields.to_dict(m.fields)['correct']]
    assert rewarded[-1] == 3.0 and rewarded[0] == 5.0
    status = term.statuses[-1]
    assert status.state == PilotStatus.STATE_IDLE and status.pilot == 'rig1' and status.ros_distro
    assert 'autopilot_pilot' in status.package_names


@pytest.mark.parametrize('bad_goal, fragment', [
    (goal(task='2afc', reward_ul=99.0), "parameter 'reward_ul': 99.0 is out of range, allowed float in [0.5, 50.0] uL"),
    (goal(task='2afc', reward_ml=5.0), "unknown parameter 'reward_ml'"),
    (goal(task='3afc'), "unknown task '3afc'"),
    (goal(protocol='nope'), "unknown protocol 'nope'"),
    (goal(subject='', task='2afc'), 'goal.subject is empty'),
])
def test_bad_goals_are_rejected_with_the_reason_in_the_status(procs, node, tmp_path, bad_goal, fragment):
    rig = start_rig(procs, tmp_path, 'rig1', with_subject=False)
    term = Terminal(node, 'rig1')
    handle = term.send(bad_goal)
    assert not handle.accepted
    term.spin_until(lambda: term.statuses and fragment in term.statuses[-1].message, 10,
                    f'status message lacks {fragment!r}: {[s.message for s in term.statuses]}')
    assert term.statuses[-1].state == PilotStatus.STATE_IDLE
    assert rig['pilot'].popen.poll() is None, 'the pilot went down'
    assert fragment in rig['pilot'].output()


def test_missing_hardware_is_an_error_state_and_the_pilot_stays_up(procs, node, tmp_path):
    # No gpio or sound node at all, then a rig whose gpio lacks a device the task needs.
    pilot = procs([PILOT, '--ros-args', '-r', '__ns:=/rig9', '-p', f'journal_path:={tmp_path / "j.sqlite3"}',
                   '-p', 'hardware_timeout_s:=1.0'], name='pilot')
    pilot.wait_for_output('ready')
    term = Terminal(node, 'rig9')
    result = term.run(goal(task='2afc'), timeout=20)
    assert not result.success and 'no gpio node at /rig9/gpio' in result.message, result.message
    term.spin_until(lambda: term.statuses and term.statuses[-1].state == PilotStatus.STATE_ERROR, 5, 'no error state')
    assert 'hardware_namespace' in term.statuses[-1].message
    procs([GPIO, '--ros-args', '-r', '__ns:=/rig9', '-p', 'inputs:=[poke_left, poke_right]',
           '-p', 'devices.poke_left.pin:=17', '-p', 'devices.poke_right.pin:=9'], name='gpio').wait_for_output('ready')
    # Discovery of the new node's services takes a moment: give the pilot time to see it (a live change).
    set_params = node.create_client(SetParameters, '/rig9/pilot/set_parameters')
    [res] = call(node, set_params, SetParameters.Request(
        parameters=[Parameter('hardware_timeout_s', value=15.0).to_parameter_msg()])).results
    assert res.successful, res.reason
    result = term.run(goal(task='2afc'), timeout=20)
    assert not result.success and "needs input 'poke_center' (role center)" in result.message, result.message
    assert pilot.popen.poll() is None


def test_a_pilot_drives_hardware_in_another_namespace(procs, node, tmp_path):
    # Autopilot's "children": the devices run on another Pi (here /child); the pilot in /parent drives them.
    start_rig(procs, tmp_path, 'child', pilot_ns='parent')
    term = Terminal(node, 'parent')
    result = term.run(goal(task='2afc', max_trials=5, **FAST_TASK), timeout=60)
    assert result.success and result.n_trials == 5, result.message
    trials = term.session(result.session_id)
    assert all(t['response'] in ('left', 'right') for t in trials)
    assert {m.pilot for m in term.trials.values()} == {'parent'}


def test_default_namespace_is_the_sanitised_host_name(procs, node, tmp_path):
    pilot = procs([PILOT, '--ros-args', '-p', f'journal_path:={tmp_path / "j.sqlite3"}'], name='pilot')
    pilot.wait_for_output('ready')
    ns = '/' + host_namespace()
    assert spin(node, node.executor_, timeout_sec=20,
                until=lambda: ('pilot', ns) in node.get_node_names_and_namespaces()), \
        node.get_node_names_and_namespaces()
    statuses: list[PilotStatus] = []
    node.create_subscription(PilotStatus, f'{ns}/status', statuses.append, qos.STATUS)
    # Transient-local: a late subscriber gets the current status at once, not after the next beat.
    assert spin(node, node.executor_, timeout_sec=5, until=lambda: statuses)
    assert statuses[0].pilot == host_namespace() and statuses[0].state == PilotStatus.STATE_IDLE


def test_only_an_ack_naming_this_pilot_and_its_session_counts(procs, node, tmp_path):
    """A stray TrialAck (empty pilot, another pilot, a session this pilot never ran) acknowledges nothing: the
    trials stay unacked in the journal and are resent, until the real terminal's ack comes."""
    rig = start_rig(procs, tmp_path, 'rig1')
    term = Terminal(node, 'rig1', ack=False)
    result = term.run(goal(task='2afc', max_trials=5, **FAST_TASK), timeout=60)
    assert result.success and result.n_trials == 5
    sid, numbers = result.session_id, list(range(1, 6))
    for forged in (TrialAck(pilot='', session_id=sid, trial_numbers=numbers),
                   TrialAck(pilot='rig2', session_id=sid, trial_numbers=numbers),
                   TrialAck(pilot='rig1', session_id='not-a-session', trial_numbers=numbers)):
        term.ack_pub.publish(forged)
    copies = dict(term.copies)
    rig['pilot'].wait_for_output("trial_acks refused: ack names pilot '', not 'rig1'", timeout=10)
    # Still unacked: every trial comes again (resend backoff 0.5, 1, 2 ... s).
    term.spin_until(lambda: all(term.copies[k] > copies[k] for k in copies), 20, f'not resent: {term.copies}')
    term.ack_pub.publish(TrialAck(pilot='rig1', session_id=sid, trial_numbers=numbers))
    spin(node, node.executor_, timeout_sec=1.0)
    journal = journal_of(rig)
    assert journal.stats(sid).unacked_trials == 0
    journal.close()


def test_a_composed_pilot_sends_every_hardware_command_in_process(rclpy_context, tmp_path):
    """The task's hardware in a pilot composed with gpio and sound (the rig process): outputs, rewards, plays and
    sound stops all reach those nodes in-process, none over DDS (so none overtakes another)."""
    from autopilot_core import intra, rclpy_private

    if not rclpy_private.SUPPORTED:
        pytest.skip(f'intra-process delivery is off: {rclpy_private.unsupported_reason()}')
    from autopilot_msgs.msg import DigitalOutput, Reward, SoundPlay
    from std_msgs.msg import Empty

    from autopilot_core.executors import make_executor
    from autopilot_hardware.gpio.node import GpioNode
    from autopilot_hardware.sound.node import SoundServer
    from autopilot_pilot.hardware import RosHardware
    from autopilot_pilot.node import PilotNode

    ns = '/composed_rig'
    gpio = GpioNode(context=rclpy_context, namespace=ns, parameter_overrides=[
        Parameter('outputs', Parameter.Type.STRING_ARRAY, ['valve_left', 'led_center']),
        Parameter('devices.valve_left.pin', value=17), Parameter('devices.valve_left.kind', value='valve'),
        Parameter('devices.led_center.pin', value=18), Parameter('devices.led_center.kind', value='led'),
        Parameter('calibration_file', value=str(tmp_path / 'calibration.jsonl')),
        Parameter('pilot_status_topic', value='')])
    sound = SoundServer(context=rclpy_context, namespace=ns, parameter_overrides=[Parameter('backend', value='null')])
    pilot = PilotNode(context=rclpy_context, namespace=ns, parameter_overrides=[
        Parameter('journal_path', value=str(tmp_path / 'journal.sqlite3'))])
    nodes = [gpio, sound, pilot]
    ex = make_executor(context=rclpy_context)
    try:
        topics = {'gpio/output': DigitalOutput, 'gpio/reward': Reward, 'sound/play': SoundPlay, 'sound/stop': Empty}
        subs = {}
        for topic, msg_type in topics.items():
            [sub] = intra._registry[rclpy_context][(f'{ns}/{topic}', msg_type)].subscriptions
            assert sub.node is (sound if topic.startswith('sound') else gpio), topic
            subs[topic] = sub
        for n in nodes:
            ex.add_node(n)
        errors: list[str] = []
        hw = RosHardware({'valve': 'valve_left', 'led': 'led_center'}, pilot.commands, errors.append)
        hw.pulse('led', 1.0)
        hw.reward('valve', 1.0)
        hw.play('never_loaded')
        hw.stop_sound()
        assert spin(nodes, ex, until=lambda: all(s.n_local == 1 for s in subs.values()), timeout_sec=10), \
            {t: (s.n_local, s.n_dds) for t, s in subs.items()}
        spin(nodes, ex, until=lambda: False, timeout_sec=0.3)  # DDS copies come (and are dropped) now
        assert {t: (s.n_local, s.n_dds) for t, s in subs.items()} == {t: (1, 0) for t in topics}
        assert errors == []
    finally:
        ex.shutdown(timeout_sec=1.0)
        sound.close()
        for n in reversed(nodes):
            n.destroy_node()
