from setuptools import find_packages, setup

PACKAGE = 'autopilot_tasks'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='autopilot-ros maintainers',
    maintainer_email='autopilot-ros@example.org',
    description='The task API, the registered tasks and protocol files: what pilots run and terminals check.',
    license='MPL-2.0',
    entry_points={
        # Tasks: third-party packages register theirs in this group too (see docs/tasks.md).
        'autopilot.tasks': [
            'free_water = autopilot_tasks.tasks.free_water:FreeWater',
            '2afc = autopilot_tasks.tasks.two_afc:TwoAFC',
            'echo = autopilot_tasks.tasks.echo:Echo',
            'gonogo = autopilot_tasks.tasks.go_nogo:GoNoGo',
            'gap_in_noise = autopilot_tasks.tasks.gap_in_noise:GapInNoise',
            'psychometric_2afc = autopilot_tasks.tasks.psychometric_2afc:PsychometricTwoAFC',
            'nafc = autopilot_tasks.tasks.nafc:NAFC',
            'wheel_gonogo = autopilot_tasks.tasks.wheel_gonogo:WheelGoNogo',
        ],
        'autopilot.command': [
            'task = autopilot_tasks.task_cli:TaskCommand',
        ],
    },
)
