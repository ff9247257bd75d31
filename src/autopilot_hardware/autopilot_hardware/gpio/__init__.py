"""GPIO device node (``gpio``): named inputs and outputs on pins, with sim, pigpio and lgpio backends.

Plain-Python logic (device table, tick clocks, backends, valve calibration) lives in the modules next to
:mod:`autopilot_hardware.gpio.node`, which only wires it to ROS.
"""
