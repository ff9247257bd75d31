from setuptools import find_packages, setup

PACKAGE = 'autopilot_setup'

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
    description='autopilot setup: configure a host as terminal or pilot, guided or from an answers file.',
    license='MPL-2.0',
    entry_points={
        'autopilot.command': ['setup = autopilot_setup.command:SetupCommand'],
    },
)
