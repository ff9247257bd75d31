from setuptools import find_packages, setup

PACKAGE = 'autopilot_cli'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        # `autopilot` also goes to <prefix>/bin, which install/setup.bash puts on PATH.
        ('bin', ['bin/autopilot']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='autopilot-ros maintainers',
    maintainer_email='autopilot-ros@example.org',
    description='The autopilot command and its ros2-style verbs.',
    license='MPL-2.0',
    entry_points={
        'console_scripts': ['autopilot = autopilot_cli.main:run'],
        # Commands of the `autopilot` CLI (as ros2cli's `ros2cli.command` group): other packages add theirs
        # (`launch`, `task`, `bag`, `hardware`, ...), so this package never imports them.
        'autopilot.command': [
            'topic = autopilot_cli.topic:TopicCommand',
            'node = autopilot_cli.node:NodeCommand',
            'service = autopilot_cli.service:ServiceCommand',
            'action = autopilot_cli.action:ActionCommand',
            'param = autopilot_cli.param:ParamCommand',
            'interface = autopilot_cli.interface:InterfaceCommand',
            'run = autopilot_cli.run:RunCommand',
            'daemon = autopilot_cli.daemon:DaemonCommand',
            'graph = autopilot_cli.dot:GraphCommand',
        ],
    },
)
