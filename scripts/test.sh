#!/usr/bin/env bash
# The README's test command: set the workspace up (idempotent), then lint and run the test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k launch`).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/setup.py --test
# colcon's setup scripts read unset variables: activate without -u.
set +u
# shellcheck disable=SC1091
. scripts/activate.sh
set -u
# DDS discovery never leaves this machine during tests (tests/conftest.py sets it too).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
ruff check src tests bench scripts
mypy
# Two workers (pytest-xdist), one test file each at a time: the suite mostly waits on real processes (load ~1
# on 2 cores when serial), so two halve its time; each test's lock-file domain id keeps the workers apart.
# A later -n overrides (-n 0: serial, e.g. under a debugger).
exec python -m pytest -n 2 --dist loadfile "$@"
