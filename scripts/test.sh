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
exec python -m pytest "$@"
