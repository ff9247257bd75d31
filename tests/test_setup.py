"""scripts/setup.py: idempotent, one activation step is enough, and the Pi path is explained."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_setup():
    spec = importlib.util.spec_from_file_location('ap_setup', ROOT / 'scripts' / 'setup.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clean_shell_env() -> dict[str, str]:
    """A new login-like shell: none of the venv's or workspace's variables."""
    env = {k: v for k, v in os.environ.items()
           if k not in ('VIRTUAL_ENV', 'AMENT_PREFIX_PATH', 'COLCON_PREFIX_PATH', 'PYTHONPATH', 'LD_LIBRARY_PATH',
                        'CMAKE_PREFIX_PATH', '_ROS_WHEELS_BOOTSTRAP_COMPLETE')}
    env['PATH'] = ':'.join(p for p in env['PATH'].split(':') if not p.startswith(str(ROOT)))
    return env


def test_second_run_is_fast_and_changes_nothing():
    activate = (ROOT / '.venv' / 'bin' / 'activate').read_text()
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, 'scripts/setup.py', '--no-apt'], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=clean_shell_env())
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert 'colcon build' not in proc.stdout and 'installing' not in proc.stdout
    assert (ROOT / '.venv' / 'bin' / 'activate').read_text() == activate
    assert activate.count('# >>> autopilot-ros >>>') == 1
    assert elapsed < 60  # generous: it only hashes files; the point is that nothing is rebuilt


def test_one_activation_step_is_enough_in_a_new_shell(tmp_path):
    script = (f'. {ROOT}/.venv/bin/activate && cd {tmp_path} && '
              'python -c "import autopilot_msgs.msg, autopilot_core, rclpy; print(autopilot_msgs.msg.TrialData.__name__)" && '
              'autopilot --help >/dev/null && echo CLI-OK && '
              'python -c "from ament_index_python.packages import get_package_share_directory as g; '
              'print(g(\'std_msgs\')); print(g(\'autopilot_msgs\'))"')
    proc = subprocess.run(['bash', '-c', script], capture_output=True, text=True, timeout=120, env=clean_shell_env())
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    assert lines[0] == 'TrialData' and 'CLI-OK' in lines
    # Wheel packages are found through the ament index too (the venv is on AMENT_PREFIX_PATH).
    assert lines[-2].endswith('/.venv/share/std_msgs') and lines[-1].endswith('install/autopilot_msgs/share/autopilot_msgs')


def test_executables_are_where_ros2_run_looks(tmp_path):
    for pkg, exe in (('autopilot_cli', 'autopilot'), ('autopilot_pilot', 'pilot'), ('autopilot_pilot', 'rig'),
                     ('autopilot_hardware', 'gpio'), ('autopilot_terminal', 'terminal')):
        assert os.access(ROOT / 'install' / pkg / 'lib' / pkg / exe, os.X_OK), exe
    share = ROOT / 'install' / 'share' if (ROOT / 'install' / 'share').exists() else None
    assert share is None  # isolated install: one prefix per package, as colcon does by default
    for pkg in ('autopilot_msgs', 'autopilot_core', 'autopilot_runtime_py', 'autopilot_cli', 'autopilot_launch',
                'autopilot_tasks', 'autopilot_hardware', 'autopilot_pilot', 'autopilot_terminal'):
        assert (ROOT / 'install' / pkg / 'share' / 'ament_index' / 'resource_index' / 'packages' / pkg).exists()


def test_aarch64_without_ros_stops_with_the_pi_paths(monkeypatch, capsys):
    setup = load_setup()
    monkeypatch.delenv('ROS_DISTRO', raising=False)
    monkeypatch.setattr(setup.platform, 'machine', lambda: 'aarch64')
    assert setup.main(['--no-apt']) == 1
    err = capsys.readouterr().err
    assert 'no ROS 2 wheels for aarch64' in err
    assert 'Ubuntu 24.04' in err and 'ros-jazzy-ros-base' in err and 'ros:jazzy-ros-base' in err


def test_unsupported_python_is_named(monkeypatch):
    setup = load_setup()
    monkeypatch.setattr(setup.sys, 'version_info', (3, 9, 0))
    monkeypatch.setattr(setup.shutil, 'which', lambda name, path=None: None)
    with pytest.raises(setup.SetupError, match='CPython 3.10-3.13'):
        setup.pick_python()


def test_missing_apt_packages_are_named_when_not_root(monkeypatch):
    setup = load_setup()
    monkeypatch.setattr(setup, 'missing_apt', lambda pkgs: ['cmake'])
    monkeypatch.setattr(setup.os, 'geteuid', lambda: 1000)
    monkeypatch.setattr(setup.shutil, 'which', lambda name, path=None: None)
    with pytest.raises(setup.SetupError, match='sudo apt-get install cmake'):
        setup.ensure_apt(['cmake'], required=True)
