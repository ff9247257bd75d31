from setuptools import find_packages, setup

PACKAGE = 'autopilot_runtime_py'

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
    description='Interfaces by name; messages to and from YAML, dicts and CSV (as rosidl_runtime_py).',
    license='MPL-2.0',
)
