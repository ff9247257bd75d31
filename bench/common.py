"""What the benchmarks share: the child-process protocol, child processes, machine and version facts.

``closed_loop.py``, ``hardware.py``, ``recorder.py`` and ``transport.py`` are run as scripts (``python bench/x.py``), so
this directory is first on ``sys.path`` and they ``import common``; their child processes are the same
scripts, so the same holds there.

Protocol: a child writes one line per event to stdout, :data:`MARK` followed by a JSON object with an
``ev`` key (:func:`emit`); ``ev == 'error'`` carries ``message`` (and optionally ``traceback``). Every
other line, and stderr, goes to the child's log file. The orchestrator waits for events with
:meth:`Child.expect` and stops children with :meth:`Child.stop`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The simulated rig's gpio node (installed by scripts/setup.py) and its parameters.
GPIO_EXE = ROOT / 'install' / 'autopilot_hardware' / 'lib' / 'autopilot_hardware' / 'gpio'
GPIO_PARAMS = ROOT / 'launch' / 'params' / 'rig_sim.yaml'
#: Prefix of protocol lines on a child's stdout.
MARK = '@@bench '


# --------------------------------------------------------------------------------------------------
# Child side
# --------------------------------------------------------------------------------------------------

def emit(ev: str, **data: Any) -> None:
    """One protocol line to the orchestrator."""
    sys.stdout.write(MARK + json.dumps({'ev': ev, **data}) + '\n')
    sys.stdout.flush()


def die_with_parent(parent: int) -> None:
    """SIGINT this process when the orchestrator dies (even by SIGKILL), so no child outlives it.

    SIGINT rather than SIGTERM: rclpy turns it into a context shutdown, which the spin loops see,
    so the process exits cleanly and Fast DDS releases its shared memory.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGINT))  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGINT)


def child_exec(a: argparse.Namespace) -> int:
    """Run an executable (an installed node) so that it, too, gets SIGINT when the orchestrator dies."""
    die_with_parent(a.parent)
    os.execv(a.cmd[0], a.cmd)
    return 1  # not reached


def run(a: argparse.Namespace, children: Mapping[str, Callable[[argparse.Namespace], int]],
        orchestrate: Callable[[argparse.Namespace], int], log_prefix: str) -> int:
    """A benchmark's ``main`` after parsing: a child runs its role (an error is one protocol line), the
    orchestrator runs with a log directory (a fresh temporary one unless ``--log-dir`` was given)."""
    if a.child:
        if a.child == 'exec':
            return child_exec(a)
        die_with_parent(a.parent)
        try:
            return children[a.child](a)
        except Exception as exc:  # noqa: BLE001 - reported to the orchestrator as one line
            emit('error', message=f'{type(exc).__name__}: {exc}', traceback=traceback.format_exc())
            return 1
    a.log_dir = a.log_dir or Path(tempfile.mkdtemp(prefix=log_prefix))
    a.log_dir.mkdir(parents=True, exist_ok=True)
    try:
        return orchestrate(a)
    except KeyboardInterrupt:  # children were stopped on the way out
        print('interrupted', file=sys.stderr)
        return 130


def ros_versions(*dists: str) -> dict[str, Any]:
    """Versions of the ROS 2 wheels and of ``dists``, and the environment settings that change what DDS does."""
    out: dict[str, Any] = {n: dist_version(n) for n in ('ros-rclpy', 'ros-jazzy-rclpy', 'ros-rmw-fastrtps-cpp',
                                                         'ros-fastrtps', *dists)}
    for var in ('ROS_DISTRO', 'RMW_IMPLEMENTATION', 'FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_BUILTIN_TRANSPORTS',
                'RMW_FASTRTPS_PUBLICATION_MODE', 'AUTOPILOT_EXECUTOR'):
        out[var] = os.environ.get(var)
    return out


# --------------------------------------------------------------------------------------------------
# Orchestrator side
# --------------------------------------------------------------------------------------------------

class ChildError(RuntimeError):
    """A child reported an error, exited before an event, or did not send it in time."""


class Child:
    """A child process whose :data:`MARK` lines become events; its other output goes to ``<log_dir>/<name>.log``.

    It runs in its own session (process group), so :meth:`stop` reaches anything it spawns. With
    ``stdin=True`` the orchestrator can :meth:`send` it line commands; otherwise stdin is /dev/null.
    """

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_dir: Path, *, stdin: bool = False) -> None:
        self.name = name
        self.log_path = log_dir / f'{name}.log'
        self._log = open(self.log_path, 'w')
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()  # None: stdout closed
        self.seen: dict[str, dict[str, Any]] = {}  # last event of each kind taken off the queue
        self.popen = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, text=True,
                                      errors='replace', start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            if line.startswith(MARK):
                self.events.put(json.loads(line[len(MARK):]))
            else:
                self._log.write(line)
                self._log.flush()
        self.events.put(None)

    def log_tail(self, chars: int = 1200) -> str:
        try:
            return self.log_path.read_text(errors='replace')[-chars:]
        except OSError:
            return ''

    def expect(self, ev: str, timeout: float) -> dict[str, Any]:
        """The next event ``ev`` (skipping others); ChildError on an error event, exit or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise ChildError(f'{self.name}: no {ev!r} within {timeout:.0f} s; log: {self.log_tail()}') from None
            if event is None:
                self.events.put(None)
                self.popen.wait(timeout=5)
                raise ChildError(f'{self.name} exited ({self.popen.returncode}) before {ev!r}; '
                                 f'log: {self.log_tail()}')
            self.seen[event['ev']] = event
            if event['ev'] == 'error':
                trace = event.get('traceback')
                raise ChildError(f'{self.name}: {event["message"]}' + (f'\n{trace}' if trace else ''))
            if event['ev'] == ev:
                return event

    def send(self, command: str) -> None:
        """One line command on the child's stdin (``stdin=True``)."""
        assert self.popen.stdin is not None
        self.popen.stdin.write(command + '\n')
        self.popen.stdin.flush()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 5.0, natural: float = 0.0) -> int | None:
        """Wait ``natural`` s for it to exit by itself, then SIGINT the process group (nodes close cleanly:
        outputs low, shared memory freed) and wait ``grace`` s, then SIGKILL. Returns the exit code."""
        try:
            self.popen.wait(timeout=natural)
        except subprocess.TimeoutExpired:
            pass
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, 5.0)):
            if self.popen.poll() is not None:
                break
            try:
                os.killpg(self.popen.pid, sig)
                self.popen.wait(timeout=wait)
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        self._reader.join(timeout=2.0)  # the rest of its output into the log before the log is closed
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        self._log.close()
        return self.popen.returncode


# --------------------------------------------------------------------------------------------------
# The printed table
# --------------------------------------------------------------------------------------------------

def fmt(v: Any, spec: str) -> str:
    """``v`` formatted with ``spec``, '-' when there is no value."""
    return '-' if v is None else format(v, spec)


def print_table(rows: list[dict[str, Any]], columns: Sequence[tuple[str, str, str]], *, left: int = 1,
                group: str | None = None) -> None:
    """One line per row under a header and a rule. ``columns``: (key, header, format spec; '' = as text); '-'
    where a row has no value. The first ``left`` columns are left-aligned, the rest right-aligned; with
    ``group``, the first cell is blanked while the row's ``group`` value repeats the previous row's."""
    cells = [[h for _, h, _ in columns]]
    last = None
    for r in rows:
        line = [fmt(r.get(k), f) for k, _, f in columns]  # format(v, '') is str(v)
        if group is not None:
            if r[group] == last:
                line[0] = ''
            last = r[group]
        cells.append(line)
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    for i, c in enumerate(cells):
        print('  '.join(v.ljust(w) if j < left else v.rjust(w) for j, (v, w) in enumerate(zip(c, widths, strict=True))))
        if i == 0:
            print('  '.join('-' * w for w in widths))


# --------------------------------------------------------------------------------------------------
# Facts for the JSON
# --------------------------------------------------------------------------------------------------

def dist_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    cpu = ''
    try:
        cpu = next((line.split(':', 1)[1].strip() for line in Path('/proc/cpuinfo').read_text().splitlines()
                    if line.startswith('model name')), '')
    except OSError:
        pass
    return {'hostname': socket.gethostname(), 'platform': platform.platform(), 'machine': platform.machine(),
            'cpu': cpu, 'cpu_count': os.cpu_count(), 'python': platform.python_version(),
            'loadavg_start': list(os.getloadavg())}
