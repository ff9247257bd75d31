"""Device nodes of autopilot-ros: GPIO, sound and camera, each its own rclpy node.

Never imports autopilot_pilot or autopilot_terminal: devices meet the rest of the suite only over
topics, services and actions defined in autopilot_msgs.
"""
