"""Shared fixtures: a private ROS_DOMAIN_ID per test, process management, an rclpy context.

Every test runs its ROS traffic on a domain id no other test (of this run or of a concurrent run on the
same machine) is using: ids are taken with a lock file held for the test's duration. Discovery stays
on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.pop('ROS_STATIC_PEERS', None)
# The GUI tests draw real Qt windows without a screen (pytest-qt); a display the user has is not used.
os.environ['QT_QPA_PLATFORM'] = 'offscreen'

ROOT = Path(__file__).resolve().parent.parent
LOCK_DIR = Path(tempfile.gettempdir()) / 'autopilot-ros-domains'
DOMAIN_IDS = range(1, 101)


class DomainLease:
    """A ROS_DOMAIN_ID held exclusively (flock) until released."""

    def __init__(self) -> None:
        LOCK_DIR.mkdir(exist_ok=True)
        for domain in DOMAIN_IDS:
            fd = os.open(LOCK_DIR / f'{domain}.lock', os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.domain, self._fd = domain, fd
            return
        raise RuntimeError(f'no free ROS_DOMAIN_ID in {DOMAIN_IDS}')

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


@pytest.fixture
def domain_id() -> Iterator[int]:
    """A ROS_DOMAIN_ID private to this test; also exported in os.environ for child processes."""
    lease = DomainLease()
    old = os.environ.get('ROS_DOMAIN_ID')
    os.environ['ROS_DOMAIN_ID'] = str(lease.domain)
    try:
        yield lease.domain
    finally:
        # A graph verb of this test may have started this domain's CLI daemon: stop it with the test (a
        # socket connect when there is none).
        from autopilot_cli import daemon
        daemon.stop(timeout=5.0)
        if old is None:
            os.environ.pop('ROS_DOMAIN_ID', None)
        else:
            os.environ['ROS_DOMAIN_ID'] = old
        lease.release()


def child_env(domain: int) -> dict[str, str]:
    """Environment for child processes on ``domain``: this machine only, unbuffered, uncoloured logs."""
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               PYTHONUNBUFFERED='1', RCUTILS_COLORIZED_OUTPUT='0')
    return env


@pytest.fixture
def ros_env(domain_id: int) -> dict[str, str]:
    """Environment for child processes of this test."""
    return child_env(domain_id)


class Proc:
    """A child process in its own session, with stdout+stderr captured to a file."""

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None) -> None:
        self.cmd = cmd
        self.log_path = log_path
        self._log = open(log_path, 'wb')
        self.popen = subprocess.Popen(cmd, env=env, cwd=cwd or ROOT, stdout=self._log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors='replace')

    def wait_for_output(self, text: str, timeout: float = 20.0) -> str:
        """Wait until ``text`` appears in the output; fail with the output so far otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if text in out:
                return out
            if self.popen.poll() is not None:
                time.sleep(0.2)
                out = self.output()
                if text in out:
                    return out
                raise AssertionError(f'{self.cmd} exited ({self.popen.returncode}) before printing '
                                     f'{text!r}:\n{out}')
            time.sleep(0.05)
        raise AssertionError(f'{self.cmd} did not print {text!r} within {timeout} s:\n{self.output()}')

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)

    def wait(self, timeout: float = 15.0) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self, grace: float = 5.0) -> int:
        """SIGINT the process group, then SIGKILL after ``grace`` seconds."""
        if self.popen.poll() is None:
            self.signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(timeout=5)
        # Also kill stragglers left in the group (a launcher's children).
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
        return self.popen.returncode


@pytest.fixture
def procs(ros_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """``start(cmd, env=None, name=None)`` runs a child on this test's domain; all are stopped at teardown."""
    started: list[Proc] = []

    def start(cmd: list[str], env: dict[str, str] | None = None, name: str | None = None,
              cwd: Path | None = None) -> Proc:
        log = tmp_path / f'{name or Path(cmd[0]).name}-{len(started)}.log'
        proc = Proc(cmd, env or ros_env, log, cwd)
        started.append(proc)
        return proc

    yield start
    for p in reversed(started):
        p.stop()


@pytest.fixture
def rclpy_context(domain_id: int) -> Iterator[object]:
    """An initialised rclpy Context on this test's domain, for nodes created inside the test."""
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    try:
        yield ctx
    finally:
        rclpy.shutdown(context=ctx)


@pytest.fixture
def node(rclpy_context, request):
    """An rclpy node in the test process with an executor of the suite's choice as ``node.executor_``."""
    from rclpy.node import Node

    from autopilot_core.executors import destroy_node, make_executor

    n = Node(f'test_{request.node.name}'.translate(str.maketrans('[]-.:/', '______'))[:60], context=rclpy_context)
    n.executor_ = make_executor(context=rclpy_context)
    yield n
    n.executor_.shutdown()
    destroy_node(n)  # with its action clients and servers: see its docstring


@pytest.fixture
def window(qtbot, domain_id):
    """``window()`` makes a Terminal window with its bridge on this test's domain (pytest-qt; closed and stopped
    after the test)."""
    from autopilot_gui.bridge import Bridge
    from autopilot_gui.window import MainWindow

    made = []

    def make() -> MainWindow:
        bridge = Bridge()
        bridge.start()
        w = MainWindow(bridge)
        qtbot.addWidget(w)
        w.show()
        made.append(w)
        return w
    yield make
    for w in made:
        w.close()
        w.bridge.stop()


def settle(node, client, seconds: float = 0.5) -> None:
    """Let discovery settle once after a new client first sees its server.

    Fast DDS's service server waits only 100 ms for the client's reply reader to be matched before it drops
    a reply (ros2/rmw_fastrtps#842: asymmetric discovery under load); wait_for_service says only that the
    client sees the server. A fresh client on a loaded 2-core machine lost replies that way.
    """
    from autopilot_core.executors import spin

    if not getattr(client, '_autopilot_settled', False):
        spin(node, node.executor_, timeout_sec=seconds)
        client._autopilot_settled = True


def call(node, client, request, timeout: float = 10.0):
    """Call a service from ``node`` (fixture above) and return the response; fail clearly otherwise."""
    from autopilot_core.executors import spin_until_future

    assert client.wait_for_service(timeout_sec=timeout), f'{client.srv_name} not available'
    settle(node, client)
    future = client.call_async(request)
    assert spin_until_future(node, future, timeout, node.executor_), f'no answer from {client.srv_name}'
    return future.result()


def python() -> str:
    return sys.executable


# -- the `autopilot` CLI as a user runs it ---------------------------------------------------------------
_INSTALLED = shutil.which('autopilot')
AUTOPILOT = [_INSTALLED] if _INSTALLED else [sys.executable, '-m', 'autopilot_cli.main']


def cli(env: dict[str, str] | None, *args: str, timeout: float = 60.0, stdin: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    """Run `autopilot ARGS` (as the installed entry point does) and return what it printed.

    A call that outlives ``timeout`` is a hang to find, not a slow answer: it gets SIGABRT with Python's
    faulthandler on, so the failure shows where every thread of the command was.
    """
    env = dict(os.environ if env is None else env, PYTHONFAULTHANDLER='1')
    with subprocess.Popen([*AUTOPILOT, *args], env=env, stdin=subprocess.PIPE if stdin is not None else None,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT) as proc:
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            native = native_stacks(proc.pid)
            proc.send_signal(signal.SIGABRT)
            try:
                out, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            raise AssertionError(f'`autopilot {" ".join(args)}` hung for {timeout} s; stdout:\n{out}\n'
                                 f'stderr (faulthandler):\n{err[-8000:]}\nnative stacks:\n{native}') from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def native_stacks(pid: int, limit: int = 20000) -> str:
    """Every thread's C stack of process ``pid`` (gdb), the frames of our libraries only: where a hang is
    when Python's own stack ends in a call into rclpy or the DDS."""
    if shutil.which('gdb') is None:
        return '(gdb not installed)'
    try:
        bt = subprocess.run(['gdb', '-p', str(pid), '-batch', '-ex', 'thread apply all bt'],
                            capture_output=True, text=True, timeout=60).stdout
    except subprocess.TimeoutExpired:
        return '(gdb timed out)'
    keep = [line[:300] for line in bt.splitlines()
            if line.startswith('Thread ') or any(k in line for k in ('rcl', 'rmw', 'fastrtps', 'fastdds', 'eprosima'))]
    return '\n'.join(keep)[-limit:]


def cli_many(env: dict[str, str] | None, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Several independent CLI calls at once: each spends most of its time waiting for discovery."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda c: cli(env, *c), commands))


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f'{result.args}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}'
    return result.stdout


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one-line error of a failed call: exit 1, no traceback."""
    assert result.returncode == 1, f'{result.args}: rc {result.returncode}\n{result.stdout}\n{result.stderr}'
    assert 'Traceback' not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if 'cannot load command' not in line]
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- the benchmarks' smoke runs --------------------------------------------------------------------------
def run_bench(script: str, domain_id: int, tmp_path: Path, *args: str, timeout: float = 120.0) -> tuple[str, dict]:
    """Run ``bench/<script> --quick ARGS`` as a user does (its own process group) on ``domain_id``, with its
    JSON and child logs in ``tmp_path``; assert it exits 0 and return what it printed and its JSON."""
    out = tmp_path / f'{Path(script).stem}.json'
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    proc = subprocess.Popen([sys.executable, str(ROOT / 'bench' / script), '--quick', *args, '--out', str(out),
                             '--domain-id', str(domain_id), '--log-dir', str(tmp_path / 'logs')],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGINT lets the orchestrator stop its children; they also die with it (PDEATHSIG).
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=20)
        raise AssertionError(f'benchmark did not finish:\n{output.decode(errors="replace")}') from None
    text = output.decode(errors='replace')
    assert proc.returncode == 0, text
    return text, json.loads(out.read_text())


# --- two hosts on this machine (network namespaces), for tests of what crosses a network -----------------

def ip(*args: str) -> None:
    subprocess.run(['ip', *args], check=True, capture_output=True, timeout=10)


class Hosts:
    """Two network namespaces ``pi`` and ``term`` joined by a veth pair on 10.213.<n>.0/24."""

    def __init__(self, n: int) -> None:
        tag = f'{os.getpid() % 100000}x{n}'
        self.pi, self.term = f'appi{tag}', f'apte{tag}'
        self.pi_if, self.term_if = f'vp{tag}', f'vt{tag}'
        self.pi_ip, self.term_ip = f'10.213.{n}.1', f'10.213.{n}.2'
        ip('netns', 'add', self.pi)
        ip('netns', 'add', self.term)
        ip('link', 'add', self.pi_if, 'type', 'veth', 'peer', 'name', self.term_if)
        for ns, ifname, addr in ((self.pi, self.pi_if, self.pi_ip), (self.term, self.term_if, self.term_ip)):
            ip('link', 'set', ifname, 'netns', ns)
            ip('-n', ns, 'addr', 'add', f'{addr}/24', 'dev', ifname)
            ip('-n', ns, 'link', 'set', 'lo', 'up')
            ip('-n', ns, 'link', 'set', ifname, 'up')
            ip('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', ifname)  # DDS discovery multicast

    def cmd(self, ns: str, argv: list[str]) -> list[str]:
        return ['ip', 'netns', 'exec', ns, *argv]

    def link(self, up: bool) -> None:
        ip('-n', self.term, 'link', 'set', self.term_if, 'up' if up else 'down')

    def remove(self) -> None:
        for ns in (self.pi, self.term):
            subprocess.run(['ip', 'netns', 'del', ns], capture_output=True, timeout=10)


@pytest.fixture
def hosts(domain_id: int) -> Iterator[Hosts]:
    h = Hosts(domain_id)
    try:
        yield h
    finally:
        h.remove()


class ChildHost:
    """One network namespace joined to the test's own by a veth pair on 10.214.<n>.0/24: a child Pi beside the
    pilot's host (which is this namespace, so the test's node and the terminal's services stay reachable).
    Nodes on either side find each other through ``ROS_STATIC_PEERS`` (:meth:`env`); no multicast route is
    added to this namespace, so nothing of the test leaks onto the machine's own network."""

    def __init__(self, n: int) -> None:
        tag = f'{os.getpid() % 100000}x{n}'
        self.ns, self.here_if, self.child_if = f'apch{tag}', f'vh{tag}', f'vc{tag}'
        self.here_ip, self.child_ip = f'10.214.{n}.1', f'10.214.{n}.2'
        ip('netns', 'add', self.ns)
        ip('link', 'add', self.here_if, 'type', 'veth', 'peer', 'name', self.child_if)
        ip('link', 'set', self.child_if, 'netns', self.ns)
        ip('addr', 'add', f'{self.here_ip}/24', 'dev', self.here_if)
        ip('link', 'set', self.here_if, 'up')
        ip('-n', self.ns, 'addr', 'add', f'{self.child_ip}/24', 'dev', self.child_if)
        ip('-n', self.ns, 'link', 'set', 'lo', 'up')
        ip('-n', self.ns, 'link', 'set', self.child_if, 'up')

    def cmd(self, argv: list[str]) -> list[str]:
        return ['ip', 'netns', 'exec', self.ns, *argv]

    def env(self, base: dict[str, str], child: bool) -> dict[str, str]:
        """``base`` for a process on the child (UDP only: no shared memory across the 'network') or here."""
        if child:
            return dict(base, ROS_STATIC_PEERS=self.here_ip, FASTDDS_BUILTIN_TRANSPORTS='UDPv4')
        return dict(base, ROS_STATIC_PEERS=self.child_ip)

    def remove(self) -> None:
        subprocess.run(['ip', 'netns', 'del', self.ns], capture_output=True, timeout=10)  # takes the veth pair along


@pytest.fixture
def child_host(domain_id: int) -> Iterator[ChildHost]:
    h = ChildHost(domain_id)
    try:
        yield h
    finally:
        h.remove()
