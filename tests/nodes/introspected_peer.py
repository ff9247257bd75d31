"""A plain rclpy peer for the CLI's graph tests: a service with introspection on, a stamped topic, loose params.

* ``set_flag`` (std_srvs/SetBool) publishes its requests and responses on ``set_flag/_service_event``;
* ``stamped`` (geometry_msgs/PointStamped) at 20 Hz, stamped at publication, for ``topic delay``/``bw``;
* undeclared parameters allowed (``param delete``/``load``), ``level`` declared;
* prints ``READY`` once everything exists, ``PARAM <name>=<value>`` when a parameter is set.
"""

from __future__ import annotations

import sys

import rclpy
from geometry_msgs.msg import PointStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.qos import qos_profile_system_default
from rclpy.service_introspection import ServiceIntrospectionState
from std_srvs.srv import SetBool


class Peer(Node):
    def __init__(self) -> None:
        super().__init__('introspected_peer', allow_undeclared_parameters=True)
        self.declare_parameter('level', 3)
        self.service = self.create_service(SetBool, 'set_flag', self._on_set_flag)
        self.service.configure_introspection(self.get_clock(), qos_profile_system_default,
                                             ServiceIntrospectionState.CONTENTS)
        self.stamped = self.create_publisher(PointStamped, 'stamped', 10)
        self.create_timer(0.05, self._tick)
        self.add_on_set_parameters_callback(self._on_params)

    def _on_set_flag(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        response.success = True
        response.message = f'flag {request.data}'
        return response

    def _tick(self) -> None:
        msg = PointStamped()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = 'rig'
        self.stamped.publish(msg)

    def _on_params(self, params: list) -> SetParametersResult:
        for p in params:
            print(f'PARAM {p.name}={p.value}', flush=True)
        return SetParametersResult(successful=True)


def main() -> int:
    rclpy.init(args=sys.argv)
    node = Peer()
    print('READY', flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
