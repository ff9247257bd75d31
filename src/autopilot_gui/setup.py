from setuptools import find_packages, setup

PACKAGE = 'autopilot_gui'

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
            'gui = autopilot_gui.app:main',
        ],
        'autopilot.command': [
            'gui = autopilot_gui.app:GuiCommand',
        ],
    },
)
