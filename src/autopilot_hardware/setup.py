from setuptools import find_packages, setup

PACKAGE = 'autopilot_hardware'

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
            'gpio = autopilot_hardware.gpio.node:main',
            'sound = autopilot_hardware.sound.node:main',
            'camera = autopilot_hardware.camera.node:main',
            'wheel = autopilot_hardware.wheel.node:main',
        ],
        # Device plugins: third-party packages add theirs here (see autopilot_hardware.plugins).
        'autopilot.hardware': [
            'gpio = autopilot_hardware.gpio.node:DEVICE',
            'sound = autopilot_hardware.sound.node:DEVICE',
            'camera = autopilot_hardware.camera.node:DEVICE',
            'wheel = autopilot_hardware.wheel.node:DEVICE',
        ],
        'autopilot.command': [
            'hardware = autopilot_hardware.plugins:HardwareCommand',
            'calibrate = autopilot_hardware.gpio.calibrate_cli:CalibrateCommand',
            'check = autopilot_hardware.check_cli:CheckCommand',
        ],
    },
)
