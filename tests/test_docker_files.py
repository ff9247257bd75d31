"""The container path (issue 21, item 5) as far as this machine allows: it has a docker client but no daemon and
no access to Docker Hub, so the image is not built here. What can be checked is: the compose service starts the
rig launch file with arguments that file declares, passes the devices a rig needs, and the Dockerfile copies
files that exist and runs the setup's sourced-ROS path."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / 'docker'


def test_compose_starts_the_rig_launch_with_declared_arguments_and_the_rigs_devices() -> None:
    compose = yaml.safe_load((DOCKER / 'compose.yaml').read_text())
    rig = compose['services']['rig']
    assert rig['network_mode'] == 'host' and rig['ipc'] == 'host' and rig['stop_signal'] == 'SIGINT'
    assert {'/dev/gpiochip0', '/dev/snd'} <= set(rig['devices'])
    words = rig['command'].split()
    assert words[:3] == ['autopilot', 'launch', 'launch/rig.launch.yaml']
    declared = {a['arg']['name'] for a in yaml.safe_load((ROOT / 'launch' / 'rig.launch.yaml').read_text())['launch']
                if 'arg' in a}
    given = {w.split(':=')[0] for w in words[3:]}
    assert given <= declared, given - declared
    assert ((DOCKER / rig['build']['context']).resolve() / rig['build']['dockerfile']).exists()


def test_the_dockerfile_copies_what_exists_and_runs_the_sourced_ros_setup() -> None:
    text = (DOCKER / 'Dockerfile').read_text()
    assert text.startswith('#') and 'FROM ros:jazzy-ros-base' in text
    assert 'source /opt/ros/jazzy/setup.bash && python3 scripts/setup.py --no-apt' in text
    for source in re.findall(r'^COPY (\S+) ', text, flags=re.M):
        assert (ROOT / source).exists(), source
    assert os.access(DOCKER / 'entrypoint.sh', os.X_OK)
    ignored = (ROOT / '.dockerignore').read_text().split()
    assert '.venv' in ignored and 'install' in ignored and '.git' not in ignored  # provenance needs the git history
