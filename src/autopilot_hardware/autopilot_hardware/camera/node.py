"""``camera``: publishes frames from an OpenCV device/file or a synthetic pattern as sensor_msgs/Image.

Topics (relative, so ``__ns:=/<pilot>`` places them): ``camera/image`` (sensor_msgs/Image, bgr8 or
mono8, QoS STREAM, header stamp = capture time), ``camera/image/compressed`` (sensor_msgs/CompressedImage
JPEG, when ``publish_compressed``), ``camera/status`` (autopilot_msgs/CameraStatus, QoS STATUS, 1 Hz:
achieved fps, frames, dropped). With ``record_path`` it also writes MP4 + a timestamp table
(:mod:`autopilot_hardware.camera.recorder`).

Capture and publishing run on one thread of their own: a frame is published the moment it is read,
and the executor (parameters, status timer) never waits for a camera. The frame is captured straight
into the ``array('B')`` that the Image message carries (a numpy view of it is the capture buffer), so
the only per-frame copy is the one rclpy makes into the middleware while serialising.

Transport note (bench/hardware.py): a 640x480 bgr8 frame (921,600 B) is larger than Fast DDS's default
shared-memory segment (512 KiB), so with default settings frames go over UDP loopback in fragments and the
best-effort STREAM QoS lost 30-60 % of them at 90 fps, bare rclpy alike. So ``main()`` applies
autopilot_core's 16 MiB shared-memory profile before rclpy starts (:mod:`autopilot_core.transport`; only the
publisher needs it): all 90 fps arrive. A profile of your own (``FASTRTPS_DEFAULT_PROFILES_FILE``) wins;
``AUTOPILOT_LARGE_SHM=0`` keeps Fast DDS's built-in transports.
"""

from __future__ import annotations

import sys
import threading
import time
from array import array

import numpy as np
from autopilot_msgs.msg import CameraStatus
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image

from autopilot_core import qos, rclpy_private, stamps
from autopilot_core.executors import run_node
from autopilot_core.params import ParamSpec, check_unknown, declare
from autopilot_core.transport import use_large_shm_profile
from autopilot_hardware.camera.recorder import Mp4Recorder
from autopilot_hardware.camera.sources import FrameSource, cv2, open_source
from autopilot_hardware.plugins import DeviceInfo

PARAMS = (
    ParamSpec('backend', 'opencv', 'Frame source: an OpenCV device or file, or a synthetic test pattern',
              choices=('opencv', 'synthetic'), read_only=True),
    ParamSpec('source', '0', 'Camera index (0), device path (/dev/video0) or video file; backend opencv',
              read_only=True),
    ParamSpec('width', 640, 'Published frame width (frames of another size are scaled)', unit='px',
              min=16, max=7680, read_only=True),
    ParamSpec('height', 480, 'Published frame height', unit='px', min=16, max=4320, read_only=True),
    ParamSpec('fps', 30.0, 'Target frame rate (device request, file pacing, synthetic rate)', unit='Hz',
              min=0.1, max=1000.0, read_only=True),
    ParamSpec('encoding', 'bgr8', 'Image encoding', choices=('bgr8', 'mono8'), read_only=True),
    ParamSpec('frame_id', 'camera', 'header.frame_id of published images'),
    ParamSpec('publish_compressed', False, 'Also publish JPEG on camera/image/compressed', read_only=True),
    ParamSpec('jpeg_quality', 90, 'JPEG quality of camera/image/compressed', min=1, max=100),
    ParamSpec('record_path', '', 'Record MP4 (mp4v) here with a .csv timestamp table next to it; "" = off',
              read_only=True),
    ParamSpec('loop', False, 'Restart a video file when it ends', read_only=True),
)

DEVICE = DeviceInfo(
    name='camera', kind='camera', package='autopilot_hardware', executable='camera',
    backends=('opencv', 'synthetic'),
    description='Frames as sensor_msgs/Image (+ JPEG), status at 1 Hz, optional MP4 + timestamp table',
    parameters=PARAMS,
)


class CameraNode(Node):
    def __init__(self) -> None:
        super().__init__('camera')
        # `-p source:=0` arrives as an integer; a camera index is what it means, so take it as text.
        overrides = rclpy_private.parameter_overrides(self)
        if 'source' in overrides and overrides['source'].type_ == Parameter.Type.INTEGER:
            overrides['source'] = Parameter('source', Parameter.Type.STRING, str(overrides['source'].value))
        p = declare(self, PARAMS)
        check_unknown(self)  # a misspelt params-file key is an error, not silently ignored
        self.width, self.height, self.fps = p['width'], p['height'], p['fps']
        self.encoding = p['encoding']
        channels = 3 if self.encoding == 'bgr8' else 1
        self.frame_id, self.jpeg_quality = p['frame_id'], p['jpeg_quality']
        self.add_post_set_parameters_callback(self._on_params)
        # Opening the source raises SourceError with the fix; run_node prints it and exits 1.
        self.source: FrameSource = open_source(p['backend'], p['source'], self.width, self.height, self.fps,
                                               channels, loop=p['loop'])
        self.recorder: Mp4Recorder | None = None
        try:
            if p['record_path']:
                self.recorder = Mp4Recorder(p['record_path'], self.width, self.height, self.fps, channels == 3)
        except Exception:
            self.source.close()
            raise
        self.source_name = p['source'] if p['backend'] == 'opencv' else 'synthetic'

        self._msg = Image(height=self.height, width=self.width, encoding=self.encoding, is_bigendian=0,
                          step=self.width * channels)
        # The setter copies into its own array('B') (unless field checks are on): take the array the
        # message really holds and capture into a numpy view of it. The same buffer serves every frame:
        # publish() serialises synchronously, so it is free again when publish returns.
        self._msg.data = array('B', bytes(self.width * self.height * channels))
        self._data = self._msg.data
        shape = (self.height, self.width, channels) if channels == 3 else (self.height, self.width)
        self._frame = np.frombuffer(self._data, dtype=np.uint8).reshape(shape)
        self.image_pub = self.create_publisher(Image, 'camera/image', qos.STREAM)
        self.jpeg_pub = (self.create_publisher(CompressedImage, 'camera/image/compressed', qos.STREAM)
                         if p['publish_compressed'] else None)
        self.status_pub = self.create_publisher(CameraStatus, 'camera/status', qos.STATUS)

        self.frames = self.dropped = 0
        self._last_status = (time.monotonic(), 0)
        self.status = CameraStatus(source=self.source_name, width=self.width, height=self.height,
                                   fps_target=self.fps, recording_path=p['record_path'])
        self.create_timer(1.0, self.publish_status)
        self.publish_status()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._capture_loop, name='camera-capture', daemon=True)
        self._thread.start()
        self.get_logger().info(
            f'publishing {self.source.description} {self.width}x{self.height} {self.encoding} at {self.fps:g} fps '
            f'on {self.image_pub.topic_name}' + (f', recording {p["record_path"]}' if self.recorder else ''))

    def _on_params(self, params: list[Parameter]) -> None:
        for prm in params:
            if prm.name == 'frame_id':
                self.frame_id = prm.value
            elif prm.name == 'jpeg_quality':
                self.jpeg_quality = prm.value

    def _capture_loop(self) -> None:
        msg, frame = self._msg, self._frame
        jpeg = CompressedImage(format=f'{self.encoding}; jpeg compressed {self.encoding}')
        try:
            while not self._stop.is_set():
                f = self.source.read_into(frame)
                if f is None:
                    self.get_logger().info(f'{self.source.description}: end of video after {self.frames} frames')
                    return
                self.frames += 1
                self.dropped += f.missed
                stamp = msg.header.stamp
                stamps.stamp(stamp, f.wall_ns)
                msg.header.frame_id = self.frame_id
                self.image_pub.publish(msg)
                if self.jpeg_pub is not None:
                    ok, enc = cv2.imencode('.jpg', frame, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
                    if ok:
                        jpeg.header = msg.header
                        jpeg.data = array('B', enc.tobytes())
                        self.jpeg_pub.publish(jpeg)
                if self.recorder is not None:
                    self.recorder.write(frame, f.index, f.monotonic_ns, f.wall_ns)
        except Exception as exc:  # noqa: BLE001 - reported; the node stays up for status and params
            if self.context.ok() and not self._stop.is_set():
                self.get_logger().error(f'capture from {self.source.description} stopped: {exc}')

    def publish_status(self) -> None:
        now, frames = time.monotonic(), self.frames
        t0, f0 = self._last_status
        self._last_status = (now, frames)
        s = self.status
        s.fps_achieved = (frames - f0) / (now - t0) if now > t0 and frames else 0.0
        s.frames, s.dropped = frames, self.dropped
        s.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(s)

    def close(self) -> None:
        """Stop capturing, finish the recording; safe to call twice."""
        if getattr(self, '_stop', None) is None or self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.source.close()
        summary = f'captured {self.frames} frames, {self.dropped} dropped'
        if self.recorder is not None:
            self.recorder.close()
            summary += f', recorded {self.recorder.frames} to {self.recorder.path}'
        self.get_logger().info(summary)

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    transport = use_large_shm_profile()  # before rclpy.init: Fast DDS reads its profile then

    def make() -> CameraNode:
        node = CameraNode()
        node.get_logger().info(transport)
        return node
    return run_node(make, args)


if __name__ == '__main__':
    sys.exit(main())
