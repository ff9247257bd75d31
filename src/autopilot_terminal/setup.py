from setuptools import find_packages, setup

PACKAGE = 'autopilot_terminal'

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
    description=open('package.xml').read().split('<description>')[1].split('</description>')[0],
    license='MPL-2.0',
    entry_points={
        'console_scripts': [
            'terminal = autopilot_terminal.node:main',
        ],
        'autopilot.command': [
            'bag = autopilot_terminal.cli.bag:BagCommand',
            'export = autopilot_terminal.cli.export:ExportCommand',
            'plot = autopilot_terminal.cli.plot:PlotCommand',
            'protocol = autopilot_terminal.cli.protocol:ProtocolCommand',
            'session = autopilot_terminal.cli.session:SessionCommand',
            'subject = autopilot_terminal.cli.subject:SubjectCommand',
        ],
    },
)
