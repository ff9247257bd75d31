#!/usr/bin/env bash
# The README's demo command: set the workspace up (idempotent), then run the demo graph.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/setup.py
# colcon's setup scripts read unset variables: activate without -u.
set +u
# shellcheck disable=SC1091
. scripts/activate.sh
set -u
exec python scripts/demo.py "$@"
