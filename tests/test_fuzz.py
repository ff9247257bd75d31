"""Every subscription and service of every node, driven with generated hostile input in real processes.

A composed rig (gpio, sound, pilot and the virtual subject in one process, so the intra-process paths are
in play) and a terminal with its recorder run as they do in a lab. The test finds their endpoints in the
ROS graph (so a new endpoint is fuzzed without touching this file) and, for each hypothesis example,
publishes one generated message and one malformed byte string on every topic they subscribe to and calls
every service they offer with a generated request (:mod:`fuzz`). Then it checks what the issue asks:

* no process died, and every node still does its job (answers a service, takes a good command);
* refusals were counted on ``/diagnostics``;
* no valve was open longer than its ``max_open_ms`` in one opening, whatever the fuzzer sent.

Sessions are fuzzed too: goals for every shipped task with generated parameters (names the task has, and
one it has not; values of every type, NaN, 1e308, a megabyte of text, a stimulus set nested 100,000 deep)
are refused naming the parameter, or run within the valve limits and end.

The default run is short and derandomized (the same inputs each run: never flaky); ``-m soak`` runs
``AUTOPILOT_FUZZ_EXAMPLES`` (default 400) random examples.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from autopilot_msgs.msg import DigitalOutput, GpioEvent, WheelMotion
from autopilot_msgs.srv import CreateSubject, SetDigitalOutput
from conftest import call
from diagnostic_msgs.msg import DiagnosticArray
from fuzz import message, raw, resolve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rclpy._rclpy_pybind11 import RCLError
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import Trigger
from test_pilot import CALIBRATION, FAST_SUBJECT, RIG_PARAMS
from test_terminal import LAUNCH_FILE, RIG, TERMINAL
from test_valve_limits import LATE_MS, high_intervals, openings

from autopilot_core import qos
from autopilot_core.executors import spin

NS = 'rig_f'
NAMES = ['rig_f', 'mouse_f', 'fast', 'valve_left', 'valve_right', 'valve_center', 'led_center', 'poke_left',
         'poke_center', 'poke_right', 'tone_left', 'noise', 'nafc', 'gonogo', 'gap_in_noise', 'amber', 'wheel']
WHEEL = str(Path(__file__).resolve().parent.parent / 'install' / 'autopilot_hardware' / 'lib' / 'autopilot_hardware' /
            'wheel')
FUZZED_PACKAGES = ('autopilot_msgs/', 'std_msgs/', 'std_srvs/', 'sensor_msgs/')
MAX_OPEN_MS = 200.0  # launch/params/rig_sim.yaml
VALVES = ('valve_left', 'valve_right', 'valve_center')
#: Anything may publish on these without the test being about it.
SKIP_TOPICS = ('/rosout', '/parameter_events')
SOAK_EXAMPLES = int(os.environ.get('AUTOPILOT_FUZZ_EXAMPLES', '400'))
PUB_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)  # matches volatile and transient-local readers


def start_lab(procs, tmp_path: Path) -> tuple[object, object]:
    calibration = tmp_path / 'calibration.jsonl'
    shutil.copy(CALIBRATION, calibration)
    own = tmp_path / 'rig_f.yaml'
    own.write_text(yaml.safe_dump({
        '/**/gpio': {'ros__parameters': {'calibration_file': str(calibration)}},
        '/**/sound': {'ros__parameters': {'backend': 'null'}},
        '/**/pilot': {'ros__parameters': {'journal_path': str(tmp_path / 'journal.sqlite3'), 'seed': 7,
                                          'resend_interval_s': 0.5}},
        '/**/subject_sim': {'ros__parameters': {'seed': 3, **FAST_SUBJECT}}}))
    rig = procs([RIG, '--virtual-subject', '--ros-args', '-r', f'__ns:=/{NS}', '--params-file', str(RIG_PARAMS),
                 '--params-file', str(own)], name='rig')
    protocols = tmp_path / 'protocols'
    protocols.mkdir()
    terminal = procs([TERMINAL, '--ros-args', '-p', f'data_dir:={tmp_path / "data"}', '-p',
                      f'protocol_dir:={protocols}', '-p', f'launch_file:={LAUNCH_FILE}'], name='terminal')
    # A child's running wheel in the rig's namespace (sim backend: it takes wheel/sim_input).
    wheel = procs([WHEEL, '--ros-args', '-r', f'__ns:=/{NS}', '-p', 'backend:=sim'], name='wheel')
    rig.wait_for_output('pilot rig_f ready')
    terminal.wait_for_output('subject files in')
    wheel.wait_for_output('wheel ready')
    return rig, terminal


def edge_key(e: GpioEvent) -> tuple:
    return (e.device, e.pin, e.level, e.tick, e.tick_us, e.backend)


class Fuzzer:
    """The lab's endpoints as found in the graph, with a publisher or client for each."""

    def __init__(self, node) -> None:
        self.node = node
        self.pubs: dict[str, tuple[object, type]] = {}
        self.clients: dict[str, tuple[object, type]] = {}
        self.sent: Counter[str] = Counter()
        self.unanswered: Counter[str] = Counter()
        self.unsendable = 0
        self.forged: set[tuple] = set()
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.valve_edges: list[GpioEvent] = []
        node.create_subscription(DiagnosticArray, '/diagnostics', self.on_diagnostics, 50)
        node.create_subscription(GpioEvent, f'/{NS}/gpio/events', self.valve_edges.append, qos.EVENTS)

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            self.diagnostics[s.name] = {kv.key: kv.value for kv in s.values}

    def discover(self, expected_nodes: set[str]) -> None:
        """Wait until every expected node shows its endpoints, then make a publisher/client per endpoint."""
        g = self.node
        deadline = time.monotonic() + 30
        while True:
            found = {f'{ns.rstrip("/")}/{n}' for n, ns in g.get_node_names_and_namespaces()}
            if expected_nodes <= found or time.monotonic() > deadline:
                break
            spin(g, g.executor_, timeout_sec=0.2)
        assert expected_nodes <= found, f'missing nodes: {expected_nodes - found}'
        spin(g, g.executor_, timeout_sec=1.0)  # endpoints appear shortly after their node
        for n, ns in g.get_node_names_and_namespaces():
            if f'{ns.rstrip("/")}/{n}' not in expected_nodes:
                continue
            for topic, types in g.get_subscriber_names_and_types_by_node(n, ns):
                # An action's hidden topics (the terminal's session-action clients read feedback and status)
                # are rclpy's action code, whose messages no generated module names: fuzzed as services are not.
                if (topic in SKIP_TOPICS or topic in self.pubs or '/_action/' in topic
                        or not types[0].startswith(FUZZED_PACKAGES)):
                    continue
                cls = resolve(types[0])
                self.pubs[topic] = (g.create_publisher(cls, topic, PUB_QOS), cls)
            for name, types in g.get_service_names_and_types_by_node(n, ns):
                if '/_action/' in name or name in self.clients or not types[0].startswith(FUZZED_PACKAGES):
                    continue
                cls = resolve(types[0])
                self.clients[name] = (g.create_client(cls, name), cls)

    def round(self, data: st.DataObject) -> None:
        """One message and one malformed byte string per topic, one request per service."""
        for topic, (pub, cls) in self.pubs.items():
            for what in (data.draw(message(cls, NAMES), label=topic), data.draw(raw(cls, NAMES), label=f'{topic} bytes')):
                if isinstance(what, GpioEvent):  # forged edges: not the valves' real ones
                    self.forged.add(edge_key(what))
                try:
                    pub.publish(what)
                except RCLError:  # Fast DDS refuses to send some byte strings at all (a 2 GB length): not sent
                    self.unsendable += 1
                    continue
                self.sent[topic] += 1
        pending = []
        for name, (client, cls) in self.clients.items():
            request = data.draw(message(cls.Request, NAMES), label=name)
            pending.append((name, client, client.call_async(request)))
            self.sent[name] += 1
        spin(self.node, self.node.executor_, until=lambda: all(f.done() for _, _, f in pending), timeout_sec=15)
        for name, client, future in pending:
            if not future.done():
                self.unanswered[name] += 1
                client.remove_pending_request(future)

    def real_edges(self) -> list[GpioEvent]:
        """The gpio node's own edges: not forged, and of its run. Bytes the fuzzer flips in a valid GpioEvent can
        still decode (a valve 'high' at tick 0, seen once: an 11.8 s 'opening'); they carry a random run_id, while
        every real edge (the virtual subject's pokes too) carries the node's."""
        edges = [e for e in self.valve_edges if edge_key(e) not in self.forged]
        runs = Counter(e.run_id for e in edges).most_common(1)
        return [e for e in edges if runs and e.run_id == runs[0][0]]

    def longest_valve_opening_ms(self) -> float:
        longest = 0.0
        real = self.real_edges()
        for valve in VALVES:
            highs, left_open = high_intervals(e for e in real if e.device == valve)
            assert left_open is None, f'{valve} was left open'
            longest = max(longest, max(openings(highs, int(LATE_MS * 1000)), default=0) / 1000)
        return longest


def run_fuzz(procs, node, tmp_path: Path, examples: int, derandomize: bool) -> dict:
    rig, terminal = start_lab(procs, tmp_path)
    fuzzer = Fuzzer(node)
    fuzzer.discover({f'/{NS}/gpio', f'/{NS}/sound', f'/{NS}/pilot', f'/{NS}/subject_sim', f'/{NS}/wheel', '/terminal',
                     '/terminal/recorder'})
    assert len(fuzzer.pubs) >= 10 and len(fuzzer.clients) >= 15, (sorted(fuzzer.pubs), sorted(fuzzer.clients))
    # Let every publisher match its readers, or the first rounds would go nowhere.
    spin(node, node.executor_, until=lambda: all(p.get_subscription_count() for p, _ in fuzzer.pubs.values()),
         timeout_sec=20)

    @settings(max_examples=examples, deadline=None, derandomize=derandomize, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        fuzzer.round(data)
        assert rig.popen.poll() is None, rig.output()[-5000:]
        assert terminal.popen.poll() is None, terminal.output()[-5000:]

    started = time.monotonic()
    fuzz()
    spin(node, node.executor_, timeout_sec=3.0)  # the last pulses close; diagnostics come in

    # Every node still does its job.
    gpio = node.create_client(SetDigitalOutput, f'/{NS}/gpio/set_output')
    res = call(node, gpio, SetDigitalOutput.Request(command=DigitalOutput(device='valve_left', mode=DigitalOutput.MODE_PULSE,
                                                                           pulse_us=20_000)))
    assert res.success, res.message
    pause = call(node, node.create_client(Trigger, f'/{NS}/pause'), Trigger.Request())
    assert pause.message, pause
    created = call(node, node.create_client(CreateSubject, '/terminal/create_subject'),
                   CreateSubject.Request(subject='after_fuzz', biography_json='{}'))
    assert created.success, created.message
    samples: list[WheelMotion] = []
    node.create_subscription(WheelMotion, f'/{NS}/wheel/velocity', samples.append, qos.STREAM)
    assert spin(node, node.executor_, until=lambda: len(samples) >= 10, timeout_sec=10), 'the wheel went quiet'
    assert rig.popen.poll() is None and terminal.popen.poll() is None

    refused = {name: sum(int(v) for k, v in values.items() if k.startswith('refused '))
               for name, values in fuzzer.diagnostics.items()}
    figures = {
        'examples': examples, 'seconds': round(time.monotonic() - started, 1),
        'topics': len(fuzzer.pubs), 'services': len(fuzzer.clients),
        'inputs_sent': sum(fuzzer.sent.values()), 'unsendable': fuzzer.unsendable, 'unanswered_calls': dict(fuzzer.unanswered),
        'refused_by_node': refused, 'node_deaths': 0, 'sent_by_endpoint': dict(fuzzer.sent),
        'refused_by_endpoint': {f'{name} {k[len("refused "):]}': int(v) for name, values in fuzzer.diagnostics.items()
                                for k, v in values.items() if k.startswith('refused ')},
        'longest_valve_opening_ms': fuzzer.longest_valve_opening_ms(),
        'valve_edges': sum(1 for e in fuzzer.real_edges() if e.device in VALVES),
    }
    (tmp_path / 'fuzz.json').write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))
    assert sum(refused.values()) > 0, fuzzer.diagnostics
    assert figures['longest_valve_opening_ms'] <= MAX_OPEN_MS + LATE_MS, figures
    # A service that answers nothing holds its caller: allow the odd timeout of a loaded machine, not a pattern.
    assert sum(fuzzer.unanswered.values()) <= max(2, examples // 10), figures
    return figures


def test_generated_bad_input_on_every_endpoint_kills_nothing_and_opens_no_valve_too_long(procs, node, tmp_path):
    run_fuzz(procs, node, tmp_path, examples=12, derandomize=True)


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_soak_generated_bad_input(procs, node, tmp_path):
    run_fuzz(procs, node, tmp_path, examples=SOAK_EXAMPLES, derandomize=False)


#: Parameter values a goal may carry (rcl_interfaces Parameter types), hostile ones often.
HOSTILE = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, -1.0, 0.0, 0, -1, 2**62, True, '', 'x' * 1_000_000,
                     '[' * 100_000, '{"groups": {}}', '{"groups": {"left": [{"id": "a", "kind": "tone"}]}}',
                     '1 2 3', 'nan', [math.nan], [1e308] * 3, ['a'] * 1000, [True, False]]),
    st.floats(), st.integers(-2**63, 2**63 - 1), st.text(max_size=30), st.booleans(),
    st.lists(st.floats(), max_size=5), st.lists(st.text(max_size=5), max_size=5))
SESSION_TASKS = ('nafc', 'gonogo', 'gap_in_noise', 'psychometric_2afc', '2afc', 'free_water')


def test_generated_goals_for_every_task_are_refused_by_name_or_run_within_the_valve_limits(procs, node, tmp_path):
    from rclpy.parameter import Parameter
    from test_pilot import Terminal, goal, start_rig
    from test_valve_limits import longest_opening_ms

    from autopilot_tasks import registry

    rig = start_rig(procs, tmp_path, 'rig1')
    term = Terminal(node, 'rig1')
    edges: list[GpioEvent] = []
    node.create_subscription(GpioEvent, '/rig1/gpio/events', edges.append, qos.EVENTS)
    outcomes: Counter[str] = Counter()

    @settings(max_examples=14, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def one_goal(data: st.DataObject) -> None:
        task = data.draw(st.sampled_from(SESSION_TASKS))
        names = [*registry.lookup(task).params(), 'not_a_parameter']
        params = data.draw(st.dictionaries(st.sampled_from(names), HOSTILE, max_size=3))
        try:
            Parameter('p', value=next(iter(params.values()))) if params else None
            g = goal(task=task, max_trials=2, max_duration_s=2.0, **params)
        except (TypeError, ValueError, AssertionError):
            outcomes['unsendable'] += 1  # rclpy cannot even put it in a message (a mixed-type list)
            return
        handle = term.send(g)
        if not handle.accepted:
            term.spin_until(lambda: term.statuses and 'rejected' in term.statuses[-1].message, 10, 'no reason given')
            message = term.statuses[-1].message
            assert any(name in message for name in params), message  # names the parameter to fix
            outcomes['refused'] += 1
        else:
            future = handle.get_result_async()
            # max_duration_s ends a session after its running trial; one the virtual subject never finishes
            # (free water: it pokes only after a stimulus) or a 60 s window is cancelled, as a user would.
            if not spin(node, node.executor_, until=future.done, timeout_sec=8):
                handle.cancel_goal_async()
                term.spin_until(future.done, 20, f'{task} {params}: the cancelled session did not end')
            outcomes['ran'] += 1
        assert rig['pilot'].popen.poll() is None, rig['pilot'].output()[-3000:]

    one_goal()
    spin(node, node.executor_, timeout_sec=1.0)
    assert outcomes['refused'] >= 3 and outcomes['ran'] >= 1, outcomes
    for valve in VALVES:
        intervals, left_open = high_intervals(e for e in edges if e.device == valve)
        assert left_open is None and longest_opening_ms(intervals) <= MAX_OPEN_MS + LATE_MS, (valve, intervals)
    good = term.run(goal(task='nafc', max_trials=2, request_reward_ul=1.0, iti_s=0.05, response_window_s=1.0),
                    timeout=60)
    assert good.success and good.n_trials == 2, good.message
