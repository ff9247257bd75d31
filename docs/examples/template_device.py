"""Template for a new device node: copy this file into your package, rename, fill in the backend.

It is a working node (``python docs/examples/template_device.py``) that is registered nowhere:
it publishes a fake sensor reading on ``template/value`` (std_msgs/Float64, QoS STREAM) at ``rate_hz``
and its status as a log line. What makes it a device of the suite:

1. A ``PARAMS`` table of :class:`~autopilot_core.params.ParamSpec` rows, declared with ``declare()``:
   typed, with unit, range and choices, so bad values are refused with one line naming the fix.
2. A thin ``Node`` that opens its hardware in the constructor and *raises* with the source and the fix
   when it cannot (``run_node`` prints ``[FATAL] ...`` and exits 1), then forwards to plain objects.
3. Relative topic names (``<device>/...``) so ``__ns:=/<pilot>`` places it on a rig.
4. ``DEVICE = DeviceInfo(...)`` and ``main()`` calling ``run_node``.

Registration, in your own package's ``setup.py`` (an ament_python package built by colcon, or any
pip-installable package in the same environment)::

    entry_points={
        'console_scripts': ['my_sensor = my_pkg.my_sensor:main'],          # `ros2 run my_pkg my_sensor`
        'autopilot.hardware': ['my_sensor = my_pkg.my_sensor:DEVICE'],     # `autopilot hardware list`
    },

After ``colcon build`` (or ``pip install -e .``), ``autopilot hardware list`` shows it with its
parameters; nothing in autopilot_hardware imports it by name. A plugin that fails to import is listed
as one ``BROKEN`` line with the error, and the others still work.
"""

from __future__ import annotations

import random
import sys

from rclpy.node import Node
from std_msgs.msg import Float64

from autopilot_core import qos
from autopilot_core.executors import run_node
from autopilot_core.params import ParamSpec, check_unknown, declare
from autopilot_hardware.plugins import DeviceInfo

PARAMS = (
    ParamSpec('backend', 'sim', 'Where readings come from', choices=('sim',), read_only=True),
    ParamSpec('rate_hz', 10.0, 'Readings per second', unit='Hz', min=0.1, max=1000.0, read_only=True),
    ParamSpec('offset', 0.0, 'Added to every reading (a calibration)', unit='V'),
)

DEVICE = DeviceInfo(name='template', kind='example sensor', package='autopilot_hardware',
                    executable='template_device', backends=('sim',),
                    description='Template device: a simulated reading at rate_hz', parameters=PARAMS)


class SimSensor:
    """The 'hardware': plain Python, testable without ROS. A real backend opens its device here and
    raises RuntimeError naming the device and the fix when it is missing."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def read(self) -> float:
        return self._rng.gauss(1.0, 0.05)


class TemplateDevice(Node):
    def __init__(self) -> None:
        super().__init__('template_device')
        p = declare(self, PARAMS)
        check_unknown(self)  # a misspelt params-file key is an error, not silently ignored
        self.sensor = SimSensor()  # raises on missing hardware: run_node reports it and exits 1
        self.pub = self.create_publisher(Float64, 'template/value', qos.STREAM)
        self.create_timer(1.0 / p['rate_hz'], self.tick)
        self.get_logger().info(f'publishing on {self.pub.topic_name} at {p["rate_hz"]:g} Hz')

    def tick(self) -> None:
        offset = self.get_parameter('offset').value
        self.pub.publish(Float64(data=self.sensor.read() + offset))


def main(args: list[str] | None = None) -> int:
    return run_node(TemplateDevice, args)


if __name__ == '__main__':
    sys.exit(main())
