#!/usr/bin/env python3
"""Set up the autopilot-ros workspace: ROS 2, Python packages, system packages, colcon build.

Idempotent and fast when nothing changed (each step keeps a stamp of what it was done for).

Two ways to get ROS 2 (../shared/DESIGN.md):

* a sourced ROS 2 (``ROS_DISTRO`` set and ``import rclpy`` works): ``.venv`` is made with
  ``--system-site-packages`` so it sees the install's rclpy, and only our Python libraries go into it;
* otherwise ROS 2 Jazzy wheels from PyPI into ``.venv``, pinned by ``requirements/constraints.txt``
  (Linux x86_64 only: there are no aarch64 wheels).

Then ``colcon build`` of ``src/`` and an activation hook appended to ``.venv/bin/activate`` so that
``. .venv/bin/activate`` alone makes ``autopilot``, the interfaces and the console scripts work.

Standard library only: this runs before any venv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / '.venv'
REQ = ROOT / 'requirements'
SUPPORTED_PYTHONS = ((3, 10), (3, 11), (3, 12), (3, 13))
# Debian/Ubuntu packages: build tools for rosidl/colcon and evdev (g++ brings the kernel headers), audio, git for
# provenance, h5clear to repair subject files.
APT_BUILD = ['cmake', 'g++', 'make', 'git']
APT_RUNTIME = ['libportaudio2', 'hdf5-tools']
# Only for the tests (--test): JACK's dummy driver gives the sound server a real audio device; gdb shows the
# native stacks of a CLI call that hung, in the test's failure; systemd's systemd-analyze verifies the units
# `autopilot setup` writes; libfaketime puts a pilot's wall clock ahead, as another host's would be.
APT_TEST = ['jackd2', 'gdb', 'systemd', 'faketime']
# The GUI's Qt (PyQt5's wheel brings Qt itself, not these): shared library -> Debian package names, newest first
# (Ubuntu 24.04 and Debian 13 renamed glib's for the 64-bit time_t transition). Looked up by library, so a
# machine that has them under another package name is not asked again.
APT_GUI_LIBS = {'GL': ['libgl1'], 'glib-2.0': ['libglib2.0-0t64', 'libglib2.0-0'], 'fontconfig': ['libfontconfig1'],
                'freetype': ['libfreetype6'], 'X11': ['libx11-6'], 'Xext': ['libxext6'], 'xcb': ['libxcb1'],
                'xkbcommon-x11': ['libxkbcommon-x11-0'], 'dbus-1': ['libdbus-1-3']}
ACTIVATE_MARK = '# >>> autopilot-ros >>>'

PI_HELP = """\
There are no ROS 2 wheels for {arch}, so ROS 2 must come from a ROS install on this machine:
  * Raspberry Pi 4/5 with Ubuntu 24.04 (arm64):
        sudo apt install ros-jazzy-ros-base ros-dev-tools   (after adding the ROS 2 apt repository)
        source /opt/ros/jazzy/setup.bash && python3 scripts/setup.py
  * Raspberry Pi OS: run inside the ros:jazzy-ros-base container,
        docker run -it --net=host --device /dev/gpiochip0 -v "$PWD":/ws -w /ws ros:jazzy-ros-base
    then `source /opt/ros/jazzy/setup.bash && python3 scripts/setup.py` in it.
See README.md, "Installing on a Raspberry Pi"."""


class SetupError(RuntimeError):
    """A problem the user has to fix; printed without a traceback."""


def log(msg: str) -> None:
    print(f'[setup] {msg}', flush=True)


def run(cmd: list[str], env: dict[str, str] | None = None, quiet: bool = False) -> None:
    """Run a command, raising SetupError with its tail if it fails."""
    proc = subprocess.run(cmd, env=env, cwd=ROOT, text=True,
                          stdout=subprocess.PIPE if quiet else None,
                          stderr=subprocess.STDOUT if quiet else None)
    if proc.returncode != 0:
        tail = '\n'.join((proc.stdout or '').splitlines()[-40:])
        raise SetupError(f'command failed ({proc.returncode}): {" ".join(cmd)}\n{tail}')


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b'\0')
    return h.hexdigest()


def stamp_ok(name: str, value: str) -> bool:
    path = VENV / f'.stamp-{name}'
    return path.exists() and path.read_text() == value


def write_stamp(name: str, value: str) -> None:
    (VENV / f'.stamp-{name}').write_text(value)


# --- which ROS --------------------------------------------------------------------------------

def sourced_ros() -> str | None:
    """The distro of a sourced ROS 2 whose rclpy imports, else None."""
    distro = os.environ.get('ROS_DISTRO')
    if not distro:
        return None
    env = clean_env()
    ok = subprocess.run([sys.executable, '-c', 'import rclpy'], env=env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    if not ok:
        log(f'ROS_DISTRO={distro} is set but rclpy does not import with {sys.executable}; '
            'using the PyPI wheels instead')
        return None
    return distro


def clean_env() -> dict[str, str]:
    """Environment for child processes.

    The wheels' start-up hook exports _ROS_WHEELS_BOOTSTRAP_COMPLETE to children; a Python of another
    environment that inherits it skips its own library-path setup, so drop it (ROS2-PIP.md).
    """
    env = dict(os.environ)
    env.pop('_ROS_WHEELS_BOOTSTRAP_COMPLETE', None)
    env.pop('PYTHONHOME', None)
    return env


def pick_python() -> str:
    """A CPython 3.10-3.13 interpreter (the wheels' range), preferring the one running us."""
    if sys.version_info[:2] in SUPPORTED_PYTHONS:
        return sys.executable
    for minor in (12, 11, 13, 10):
        exe = shutil.which(f'python3.{minor}')
        if exe:
            return exe
    raise SetupError(f'Python {platform.python_version()} is not supported: the ROS 2 Jazzy wheels exist for '
                     'CPython 3.10-3.13. Install one (Debian/Ubuntu: apt install python3.11 python3.11-venv) '
                     'and run this script with it.')


# --- system packages -------------------------------------------------------------------------

def missing_apt(packages: list[str]) -> list[str]:
    if not shutil.which('dpkg-query'):
        return []
    missing = []
    for pkg in packages:
        out = subprocess.run(['dpkg-query', '-W', '-f=${Status}', pkg], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
        if 'install ok installed' not in out:
            missing.append(pkg)
    return missing


def ensure_apt(packages: list[str], required: bool) -> None:
    """Install missing Debian packages when root or passwordless sudo allows it, else name them."""
    missing = missing_apt(packages)
    if not missing:
        return
    prefix: list[str] | None = None
    if os.geteuid() == 0:
        prefix = []
    elif shutil.which('sudo') and subprocess.run(['sudo', '-n', 'true'], stderr=subprocess.DEVNULL).returncode == 0:
        prefix = ['sudo', '-n']
    if prefix is None or not shutil.which('apt-get'):
        msg = f'missing system packages: {" ".join(missing)} (install them: sudo apt-get install {" ".join(missing)})'
        if required:
            raise SetupError(msg)
        log('warning: ' + msg)
        return
    log(f'installing system packages: {" ".join(missing)}')
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    try:
        run(prefix + ['apt-get', 'install', '-y', '--no-install-recommends', *missing], env=env, quiet=True)
    except SetupError:
        # A fresh machine or container usually has no package lists yet.
        run(prefix + ['apt-get', 'update'], env=env, quiet=True)
        run(prefix + ['apt-get', 'install', '-y', '--no-install-recommends', *missing], env=env, quiet=True)


def apt_has(package: str) -> bool:
    """Whether apt can install ``package`` here (it has a candidate version)."""
    if not shutil.which('apt-cache'):
        return False
    out = subprocess.run(['apt-cache', 'policy', package], text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL).stdout
    return bool(out.strip()) and 'Candidate: (none)' not in out


def gui_apt_packages() -> list[str]:
    """Debian packages of the Qt libraries this machine lacks (see APT_GUI_LIBS)."""
    import ctypes.util

    missing = [names for lib, names in APT_GUI_LIBS.items() if not ctypes.util.find_library(lib)]
    return [next((n for n in names if apt_has(n)), names[-1]) for names in missing]


def venv_apt_package(python: str) -> list[str]:
    """Debian splits venv/ensurepip out of python3: name the package if it is missing."""
    ok = subprocess.run([python, '-c', 'import ensurepip, venv'], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL).returncode == 0
    if ok:
        return []
    ver = subprocess.run([python, '-c', 'import sys; print("%d.%d" % sys.version_info[:2])'],
                         text=True, stdout=subprocess.PIPE).stdout.strip()
    return [f'python{ver}-venv']


def headers_apt_package(python: str) -> list[str]:
    """evdev (the wheel's USB mouse) is built from source: name the Python headers' package if they are missing."""
    ok = subprocess.run([python, '-c', 'import os, sysconfig, sys; '
                         'sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    if ok:
        return []
    ver = subprocess.run([python, '-c', 'import sys; print("%d.%d" % sys.version_info[:2])'],
                         text=True, stdout=subprocess.PIPE).stdout.strip()
    return [f'python{ver}-dev']


# --- venv --------------------------------------------------------------------------------------

def venv_python() -> Path:
    return VENV / 'bin' / 'python'


def ensure_venv(python: str, system_site: bool) -> None:
    if venv_python().exists():
        return
    log(f'creating {VENV.relative_to(ROOT)} with {python}')
    cmd = [python, '-m', 'venv', str(VENV)]
    if system_site:
        cmd.insert(3, '--system-site-packages')
    run(cmd, env=clean_env())


def pip_install(req_files: list[Path]) -> None:
    value = digest(*(p.read_bytes() for p in req_files), (REQ / 'constraints.txt').read_bytes(),
                   str(venv_python().resolve()))
    if stamp_ok('pip', value):
        return
    log('installing Python packages (pinned by requirements/constraints.txt)')
    cmd = [str(venv_python()), '-m', 'pip', 'install', '--disable-pip-version-check', '-q',
           '-c', str(REQ / 'constraints.txt')]
    for r in req_files:
        cmd += ['-r', str(r)]
    run(cmd, env=clean_env())
    write_stamp('pip', value)


def fix_wheel_cmake_paths() -> None:
    """Point the wheels' CMake exports at this venv's interpreter.

    The wheels' exported CMake files name include paths of the machine that built them
    (/opt/python/cpXY-cpXY/include/python3.Y and .../site-packages/numpy/_core/include); CMake
    refuses imported targets whose include paths are missing. Rewrite them once after install.
    """
    py = str(venv_python())
    out = subprocess.run([py, '-c', 'import sysconfig, numpy; print(sysconfig.get_paths()["include"]); '
                          'print(numpy.get_include())'], env=clean_env(), text=True, stdout=subprocess.PIPE,
                         check=True).stdout.split('\n')
    pyinc, npinc = out[0], out[1]
    py_re = re.compile(r'/opt/python/cp\d+-cp\d+/include/python3\.\d+')
    np_re = re.compile(r'/opt/python/cp\d+-cp\d+/lib/python3\.\d+/site-packages/numpy/_core/include')
    for path in (VENV / 'share').rglob('*.cmake'):
        text = path.read_text(errors='surrogateescape')
        if '/opt/python/' not in text:
            continue
        new = np_re.sub(npinc, py_re.sub(pyinc, text))
        if new != text:
            path.write_text(new, errors='surrogateescape')


# --- colcon ------------------------------------------------------------------------------------

def src_digest() -> str:
    """What a rebuild depends on. Python modules are left out: --symlink-install links the package
    directories, so edited and added modules are live without a build; entry points, data files and
    interfaces are not."""
    parts: list[str | bytes] = []
    for path in sorted((ROOT / 'src').rglob('*')):
        if not path.is_file() or '__pycache__' in path.parts:
            continue
        if path.suffix == '.py' and path.name != 'setup.py':
            continue
        parts += [str(path.relative_to(ROOT)), path.read_bytes()]
    return digest(*parts)


def build_env(ros_distro: str | None) -> dict[str, str]:
    env = clean_env()
    env['VIRTUAL_ENV'] = str(VENV)
    env['PATH'] = f'{VENV / "bin"}:{env.get("PATH", "")}'
    if ros_distro is None:
        # colcon does not look in the venv by itself; the venv is an ament prefix.
        for var in ('AMENT_PREFIX_PATH', 'CMAKE_PREFIX_PATH'):
            env[var] = os.pathsep.join(p for p in (str(VENV), env.get(var, '')) if p)
    return env


def colcon_build(ros_distro: str | None, force: bool) -> None:
    value = src_digest()
    if not force and stamp_ok('build', value) and (ROOT / 'install' / 'setup.bash').exists():
        return
    log('colcon build of src/')
    colcon = shutil.which('colcon', path=str(VENV / 'bin')) or shutil.which('colcon')
    if not colcon:
        raise SetupError('colcon not found: on a ROS install, apt install ros-dev-tools (or python3-colcon-common-extensions)')
    cmd = [colcon, '--log-base', 'log/colcon', 'build', '--symlink-install', '--base-paths', 'src',
           '--event-handlers', 'console_cohesion-', 'summary+',
           '--cmake-args', f'-DPython3_EXECUTABLE={venv_python()}', '-DBUILD_TESTING=OFF']
    run(cmd, env=build_env(ros_distro), quiet=True)
    write_stamp('build', value)


def write_activation(ros_distro: str | None) -> None:
    """Append our block to .venv/bin/activate: the venv as an ament prefix, then the workspace overlay."""
    activate = VENV / 'bin' / 'activate'
    text = activate.read_text()
    if ACTIVATE_MARK in text:
        text = text[:text.index(ACTIVATE_MARK)]
    lines = [ACTIVATE_MARK,
             '# Written by scripts/setup.py: makes this venv and the colcon workspace usable together.']
    if ros_distro:
        lines.append(f'# ROS 2 {ros_distro} comes from the sourced install; source it before this file.')
    else:
        lines += ['# The wheels install ament resources into the venv, but nothing puts it on AMENT_PREFIX_PATH,',
                  '# so package and interface lookups would miss every wheel package.',
                  'case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; '
                  '*) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;; esac']
    lines += [f'if [ -f "{ROOT}/install/setup.bash" ]; then',
              f'    _ap_setup="{ROOT}/install/local_setup.bash"',
              '    if [ -n "${ZSH_VERSION:-}" ]; then _ap_setup="${_ap_setup%.bash}.zsh"; fi',
              '    . "$_ap_setup"; unset _ap_setup',
              'fi',
              '# <<< autopilot-ros <<<', '']
    activate.write_text(text.rstrip('\n') + '\n\n' + '\n'.join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rebuild', action='store_true', help='run colcon build even if src/ is unchanged')
    parser.add_argument('--no-apt', action='store_true', help='never call apt-get; only name missing packages')
    parser.add_argument('--test', action='store_true', help='also install what the tests use (jackd2)')
    args = parser.parse_args(argv)
    try:
        ros_distro = sourced_ros()
        arch = platform.machine()
        if ros_distro is None and arch not in ('x86_64', 'AMD64'):
            raise SetupError(PI_HELP.format(arch=arch))
        python = sys.executable if ros_distro else pick_python()
        runtime = APT_RUNTIME + gui_apt_packages()
        build = APT_BUILD + venv_apt_package(python) + headers_apt_package(python)
        apt = build + runtime + (APT_TEST if args.test else [])
        if args.no_apt:
            missing = missing_apt(apt)
            if missing:
                log(f'missing system packages: {" ".join(missing)} (sudo apt-get install {" ".join(missing)})')
        else:
            ensure_apt(build, required=True)
            ensure_apt(runtime + (APT_TEST if args.test else []), required=False)
        ensure_venv(python, system_site=ros_distro is not None)
        if ros_distro:
            log(f'using the sourced ROS 2 {ros_distro}')
            pip_install([REQ / 'python.txt'])
        else:
            log('using ROS 2 Jazzy wheels from PyPI in .venv')
            pip_install([REQ / 'jazzy.txt', REQ / 'python.txt'])
            fix_wheel_cmake_paths()
        colcon_build(ros_distro, args.rebuild)
        write_activation(ros_distro)
    except SetupError as exc:
        print(f'[setup] error: {exc}', file=sys.stderr)
        return 1
    activation = '. .venv/bin/activate' if not ros_distro else \
        f'source /opt/ros/{ros_distro}/setup.bash && . .venv/bin/activate'
    log(f'ready. In a new shell: {activation}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
