from setuptools import find_packages, setup

PACKAGE = 'autopilot_core'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/config', ['config/fastdds_large_shm.xml']),
        # `autopilot` also goes to <prefix>/bin, which install/setup.bash puts on PATH; the console
        # scripts below live in lib/<package>/ where `ros2 run` and `autopilot run` find them.
        ('bin', ['bin/autopilot']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='autopilot-ros maintainers',
    maintainer_email='autopilot-ros@example.org',
    description='QoS profiles, parameter helpers, executors, provenance, launch runner and the autopilot CLI.',
    license='MPL-2.0',
    entry_points={
        'console_scripts': [
            'autopilot = autopilot_core.cli.main:main',
            'demo_talker = autopilot_core.demo.talker:main',
            'demo_listener = autopilot_core.demo.listener:main',
            'demo_session = autopilot_core.demo.session:main',
        ],
        # Commands of the `autopilot` CLI; other packages add theirs (`task`, `bag`, `hardware`, ...)
        # to this group, so autopilot_core never imports them.
        'autopilot.command': [
            'topic = autopilot_core.cli.topic:TopicCommand',
            'node = autopilot_core.cli.node:NodeCommand',
            'service = autopilot_core.cli.service:ServiceCommand',
            'action = autopilot_core.cli.action:ActionCommand',
            'param = autopilot_core.cli.param:ParamCommand',
            'interface = autopilot_core.cli.interface:InterfaceCommand',
            'run = autopilot_core.cli.run:RunCommand',
            'launch = autopilot_core.cli.launch:LaunchCommand',
        ],
    },
)
