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
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='autopilot-ros maintainers',
    maintainer_email='autopilot-ros@example.org',
    description='What every autopilot-ros node needs: QoS, parameters, executors, input checks, stamps, provenance.',
    license='MPL-2.0',
)
