"""Runs a launch plan's processes: output routing, respawn, death reports and a clean, complete shutdown.

One thread, one ``selectors`` loop: child output pipes, a self-pipe woken by signals (``SIGINT``,
``SIGTERM``, ``SIGHUP``, ``SIGCHLD``) and timers (respawn delays, stop escalation). No helper threads, so
``preexec_fn`` is safe and every state change happens in one place.

Processes
  Each child starts in its own session (process group), with stdin from /dev/null, and asks the kernel to
  SIGTERM it if the launcher dies (``PR_SET_PDEATHSIG``), so even a SIGKILLed launcher leaves no node
  behind. Signals go to the child's whole group, which reaches the commands a ``shell: true`` executable
  forks. Because the children are not in the launcher's group, a Ctrl-C at the terminal reaches only the
  launcher, which then stops them in order.

Output (``output:`` as in ``launch``; default ``log``)
  ``screen``: stdout and stderr on the screen; ``log``: both to the launch log file, stderr also on the
  screen (ROS log lines go to stderr, so they stay visible); ``both``: both everywhere; ``own_log``: files
  ``<label>-stdout.log``, ``<label>-stderr.log`` and ``<label>.log``; ``full``: all of it. Screen lines are
  prefixed ``[<label>] `` with ``<label>`` = ``<executable or name>-<n>``, as ``ros2 launch`` prints them.
  The log directory is ``$ROS_LOG_DIR``, else ``$ROS_HOME/log``, else ``~/.ros/log``, then
  ``<YYYY-MM-DD-HH-MM-SS-micro>-<host>-<pid>/`` (``latest`` links to it), with ``launch.log`` (the
  launcher's messages and ``log`` output, each line with a UNIX time stamp) and ``params/`` (the
  parameter files given to the nodes) -- the same place ``ros2 launch`` uses.

Life cycle
  A child that exits non-zero is reported with its exit code (negative: killed by that signal), its
  command and its last output lines (``during startup`` when it lived less than ``STARTUP_S``). With
  ``respawn`` it is restarted after ``respawn_delay`` (at most ``respawn_max_retries`` times if >= 0); with
  ``on_exit: shutdown`` its exit stops everything. The launcher ends when no child runs and none waits to
  respawn; its exit code is 0 if every child's last exit was 0, else 1 (ros2 launch returns 0 even then;
  scripts and CI want to see the failure).

Stopping (SIGINT, SIGTERM or SIGHUP to the launcher, or ``on_exit: shutdown``)
  Each child's group gets SIGINT; after ``sigterm_timeout`` (default 5 s) SIGTERM; after a further
  ``sigkill_timeout`` (default 5 s) SIGKILL -- ``launch``'s sequence and defaults, settable per process or
  with the ``sigterm_timeout``/``sigkill_timeout`` launch arguments. A second Ctrl-C escalates at once
  (SIGTERM, then SIGKILL). The launcher returns only once every child has been reaped; the exit code is
  0 when all of them stopped on SIGINT (exit codes after the request do not count), 1 if one had failed
  before or needed SIGTERM/SIGKILL.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import errno
import os
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from autopilot_launch.evaluate import LogStep, Plan, ProcessSpec

STARTUP_S = 2.0  # a death this soon after start is reported as a failure to start
LAST_LINES = 10
_MAX_LINE = 64 * 1024
_PR_SET_PDEATHSIG = 1

_DESTS = {  # launch's output aliases: stream -> destinations
    'screen': {'stdout': {'screen'}, 'stderr': {'screen'}},
    'log': {'stdout': {'log'}, 'stderr': {'log', 'screen'}},
    'both': {'stdout': {'screen', 'log'}, 'stderr': {'screen', 'log'}},
    'own_log': {'stdout': {'own_log'}, 'stderr': {'own_log'}},
    'full': {'stdout': {'screen', 'log', 'own_log'}, 'stderr': {'screen', 'log', 'own_log'}},
}


def log_base_dir(env: dict[str, str] | None = None) -> str:
    """``$ROS_LOG_DIR``, else ``$ROS_HOME/log``, else ``~/.ros/log`` (rcl's and launch's rule)."""
    env = dict(os.environ) if env is None else env
    base = env.get('ROS_LOG_DIR') or os.path.join(env.get('ROS_HOME') or os.path.join('~', '.ros'), 'log')
    return os.path.normpath(os.path.expanduser(base))


def new_log_dir_name(base: str) -> str:
    """A fresh run directory name under ``base`` (not created yet)."""
    while True:
        stamp = datetime.datetime.now().strftime('%Y-%m-%d-%H-%M-%S-%f')
        path = os.path.join(base, f'{stamp}-{socket.gethostname()}-{os.getpid()}')
        if not os.path.exists(path):
            return path
        time.sleep(1e-6)


def _pdeathsig_setter() -> Callable[[], None] | None:
    # Resolved in the parent: the child only makes one FFI call between fork and exec.
    libc_name = ctypes.util.find_library('c')
    try:
        prctl = ctypes.CDLL(libc_name, use_errno=True).prctl if libc_name else None
    except (OSError, AttributeError):
        prctl = None

    def setup() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return setup if sys.platform.startswith('linux') else None


@dataclass
class Child:
    spec: ProcessSpec
    popen: subprocess.Popen | None = None
    started: float = 0.0
    lines: deque = field(default_factory=lambda: deque(maxlen=LAST_LINES))
    partial: dict[str, bytes] = field(default_factory=dict)
    fds: dict[int, tuple[str, object]] = field(default_factory=dict)  # fd -> (stream, pipe file)
    runs: int = 0
    last_code: int | None = None
    respawn_at: float | None = None
    stop_stage: int = 0  # 0 running, 1 SIGINT sent, 2 SIGTERM sent, 3 SIGKILL sent
    failed: bool = False  # its last run failed to start or exited non-zero on its own
    next_escalation: float = 0.0
    files: dict[str, TextIO] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.returncode is None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid


class Runner:
    """Starts the plan's processes and supervises them until they are all gone; ``run()`` returns the exit code."""

    def __init__(self, plan: Plan, log_dir: str, *, out: TextIO | None = None, debug: bool = False) -> None:
        self.plan = plan
        self.log_dir = log_dir
        self.out: TextIO | None = out or sys.stdout
        self.debug = debug
        self.children = [Child(spec) for spec in plan.processes]
        self.sel = selectors.DefaultSelector()
        self.stopping = False
        self.stop_reason = ''
        self.escalated = False
        self._signals: list[int] = []
        self._launch_log: TextIO | None = None
        self._preexec = _pdeathsig_setter()

    # -- messages
    def _screen(self, text: str) -> None:
        if self.out is None:
            return
        try:
            self.out.write(text + '\n')
            self.out.flush()
        except (BrokenPipeError, ValueError, OSError):
            self.out = None  # the reader went away (`| head`): keep running, keep logging to the file

    def _emit(self, text: str, screen: bool = True, log: bool = True) -> None:
        if screen:
            self._screen(text)
        if log and self._launch_log is not None:
            self._launch_log.write(f'{time.time():.7f} {text}\n')
            self._launch_log.flush()

    def info(self, who: str, msg: str) -> None:
        self._emit(f'[INFO] [{who}]: {msg}')

    def warn(self, who: str, msg: str) -> None:
        self._emit(f'[WARNING] [{who}]: {msg}')

    def error(self, who: str, msg: str) -> None:
        self._emit(f'[ERROR] [{who}]: {msg}')

    # -- main
    def run(self) -> int:
        os.makedirs(self.log_dir, exist_ok=True)
        self._link_latest()
        self._launch_log = open(os.path.join(self.log_dir, 'launch.log'), 'a', encoding='utf-8')
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self.sel.register(wake_r, selectors.EVENT_READ, None)
        old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)  # a full pipe still wakes us
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        old_handlers = {s: signal.signal(s, self._on_signal) for s in handled}
        old_handlers[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda *_: None)  # only wakes the loop
        try:
            self.info('launch', f'All log files can be found below {self.log_dir}')
            self._start_all()
            self._loop(wake_r)
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
            signal.set_wakeup_fd(old_wakeup)
            self._kill_leftovers()
            self.sel.close()
            os.close(wake_r)
            os.close(wake_w)
            for c in self.children:
                for f in c.files.values():
                    f.close()
            self._launch_log.close()
            self._launch_log = None
        return 1 if self.escalated or any(c.failed for c in self.children) else 0

    def _link_latest(self) -> None:
        latest = os.path.join(os.path.dirname(self.log_dir), 'latest')
        try:
            if os.path.islink(latest):
                os.unlink(latest)
            if not os.path.exists(latest):
                os.symlink(self.log_dir, latest, target_is_directory=True)
        except OSError:
            pass  # a read-only or shared base directory: the link is a convenience only

    def _on_signal(self, signum: int, frame: object) -> None:
        self._signals.append(signum)

    def _start_all(self) -> None:
        for step in self.plan.steps:
            self._handle_signals()
            if self.stopping:
                return
            if isinstance(step, LogStep):
                self.info('launch.user', step.message)
                continue
            child = next(c for c in self.children if c.spec is step)
            if step.emulate_tty:
                self.warn(step.label, 'emulate_tty is not supported by autopilot launch; output stays a pipe')
            self._start(child)

    def _start(self, c: Child) -> None:
        spec = c.spec
        c.runs += 1
        c.stop_stage = 0
        c.failed = False
        c.lines.clear()
        if self.debug:
            self.info(spec.label, f'cmd: {shlex.join(spec.cmd)}')
        try:
            c.popen = subprocess.Popen(
                ' '.join(spec.cmd) if spec.shell else spec.cmd, shell=spec.shell, env=spec.env, cwd=spec.cwd,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True, preexec_fn=self._preexec)
        except OSError as exc:
            c.popen = None
            c.respawn_at = None
            c.last_code = 127
            c.failed = True
            self.error(spec.label, f'failed to start {spec.cmd[0]}: {exc.strerror or exc}')
            if spec.on_exit_shutdown:  # no respawn: starting it again would fail the same way
                self.shutdown(f'{spec.label} could not start (on_exit: shutdown)')
            return
        c.started = time.monotonic()
        c.respawn_at = None
        for stream, pipe in (('stdout', c.popen.stdout), ('stderr', c.popen.stderr)):
            assert pipe is not None
            fd = pipe.fileno()
            os.set_blocking(fd, False)
            c.fds[fd] = (stream, pipe)
            c.partial[stream] = b''
            self.sel.register(fd, selectors.EVENT_READ, (c, stream))
        self.info(spec.label, f'process started with pid [{c.pid}]')

    def _loop(self, wake_r: int) -> None:
        while True:
            self._handle_signals()
            now = time.monotonic()
            for c in self.children:
                if c.running and c.popen is not None and c.popen.poll() is not None:
                    self._on_exit(c)
            now = time.monotonic()
            for c in self.children:
                if c.respawn_at is not None and now >= c.respawn_at and not self.stopping:
                    self._start(c)
            self._escalate(now)
            alive = [c for c in self.children if c.running or c.respawn_at is not None]
            if not alive:
                return
            deadlines = [c.respawn_at for c in alive if c.respawn_at is not None]
            deadlines += [c.next_escalation for c in alive if c.running and 0 < c.stop_stage < 3]
            timeout = max(0.0, min([0.5, *[t - now for t in deadlines]]))
            for key, _ in self.sel.select(timeout):
                if key.data is None:
                    try:
                        while os.read(wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    child, stream = key.data
                    self._read(child, key.fd, stream)

    # -- output
    def _read(self, c: Child, fd: int, stream: str) -> None:
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                data = b''
            if not data:
                self._close_fd(c, fd, stream)
                return
            buf = c.partial.get(stream, b'') + data
            *complete, rest = buf.split(b'\n')
            for raw in complete:
                self._line(c, stream, raw)
            if len(rest) > _MAX_LINE:
                self._line(c, stream, rest)
                rest = b''
            c.partial[stream] = rest

    def _close_fd(self, c: Child, fd: int, stream: str) -> None:
        if c.partial.get(stream):
            self._line(c, stream, c.partial[stream])
            c.partial[stream] = b''
        try:
            self.sel.unregister(fd)
        except (KeyError, ValueError):
            pass
        _, pipe = c.fds.pop(fd, ('', None))
        if pipe is not None:
            pipe.close()  # type: ignore[attr-defined]  # closing the file object, not the bare fd: no double close

    def _line(self, c: Child, stream: str, raw: bytes) -> None:
        line = raw.decode('utf-8', 'replace').rstrip('\r')
        c.lines.append(line)
        text = f'[{c.spec.label}] {line}'
        dests = _DESTS.get(c.spec.output, _DESTS['log'])[stream]
        if 'screen' in dests:
            self._screen(text)
        if 'log' in dests and self._launch_log is not None:
            self._launch_log.write(f'{time.time():.7f} {text}\n')
            self._launch_log.flush()
        if 'own_log' in dests:
            for name in (f'{c.spec.label}-{stream}.log', f'{c.spec.label}.log'):
                f = c.files.get(name)
                if f is None:
                    f = c.files[name] = open(os.path.join(self.log_dir, name), 'a', encoding='utf-8')
                f.write(line + '\n')
                f.flush()

    # -- exits
    def _on_exit(self, c: Child) -> None:
        assert c.popen is not None
        code = c.popen.returncode
        for fd, (stream, _) in list(c.fds.items()):  # the child is gone: what it wrote is in the pipe
            self._read(c, fd, stream)
            if fd in c.fds:  # a grandchild still holds the pipe: stop listening, keep nothing open
                self._close_fd(c, fd, stream)
        lived = time.monotonic() - c.started
        c.last_code = code
        if self.stopping and c.stop_stage:
            self._kill_group(c)  # stragglers a shell or a node forked
            self.info(c.spec.label, f'process has finished [pid {c.pid}, exit code {code}]'
                      if code else f'process has finished cleanly [pid {c.pid}]')
            return
        if code == 0:
            self.info(c.spec.label, f'process has finished cleanly [pid {c.pid}]')
        else:
            c.failed = True
            when = f' during startup ({lived:.1f} s after it started)' if lived < STARTUP_S else ''
            self.error(c.spec.label, f"process has died [pid {c.pid}, exit code {code}, "
                                     f"cmd '{shlex.join(c.spec.cmd)}']{when}")
            if c.lines:
                self.error(c.spec.label, f'its last {len(c.lines)} output line(s):')
                for line in c.lines:
                    self._emit(f'    | {line}')
        self._after_exit(c)

    def _after_exit(self, c: Child) -> None:
        spec = c.spec
        if self.stopping:
            return
        retries_left = spec.respawn_max_retries < 0 or c.runs <= spec.respawn_max_retries
        if spec.respawn and retries_left:
            c.respawn_at = time.monotonic() + spec.respawn_delay
            self.info(spec.label, f'respawning in {spec.respawn_delay:g} s (run {c.runs + 1})')
        elif spec.on_exit_shutdown:
            self.shutdown(f'{spec.label} exited (on_exit: shutdown)')

    # -- stopping
    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            name = signal.Signals(signum).name
            if not self.stopping:
                self.shutdown(f'{name} received')
            elif signum == signal.SIGINT:
                self.warn('launch', f'{name} received again: escalating')
                for c in self.children:
                    if c.running and c.stop_stage < 3:
                        c.next_escalation = 0.0
                self._escalate(time.monotonic())

    def shutdown(self, reason: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.stop_reason = reason
        running = [c for c in self.children if c.running]
        self.info('launch', f'{reason}: stopping {len(running)} process(es)')
        now = time.monotonic()
        for c in self.children:
            c.respawn_at = None
        for c in running:
            self._signal(c, signal.SIGINT)
            c.stop_stage = 1
            c.next_escalation = now + c.spec.sigterm_timeout

    def _escalate(self, now: float) -> None:
        for c in self.children:
            if not c.running or c.stop_stage == 0 or c.stop_stage >= 3 or now < c.next_escalation:
                continue
            self.escalated = True
            if c.stop_stage == 1:
                self.warn(c.spec.label, 'still running after SIGINT: sending SIGTERM')
                self._signal(c, signal.SIGTERM)
                c.stop_stage, c.next_escalation = 2, now + c.spec.sigkill_timeout
            else:
                self.error(c.spec.label, 'still running after SIGTERM: sending SIGKILL')
                self._signal(c, signal.SIGKILL)
                c.stop_stage = 3

    def _signal(self, c: Child, sig: int) -> None:
        try:
            os.killpg(c.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            try:
                os.kill(c.pid, sig)
            except ProcessLookupError:
                pass

    def _kill_group(self, c: Child) -> None:
        # Right after reaping the leader: the group id cannot have been reused while members remain.
        try:
            os.killpg(c.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _kill_leftovers(self) -> None:
        """Last resort (an exception in the loop): no child may outlive the launcher."""
        for c in self.children:
            if c.running:
                self._signal(c, signal.SIGKILL)
                try:
                    assert c.popen is not None
                    c.popen.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
