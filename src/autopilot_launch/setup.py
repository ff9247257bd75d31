from setuptools import find_packages, setup

PACKAGE = 'autopilot_launch'

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
    description='The ROS 2 YAML launch format runner behind `autopilot launch`.',
    license='MPL-2.0',
    entry_points={
        'autopilot.command': ['launch = autopilot_launch.command:LaunchCommand'],
    },
)
