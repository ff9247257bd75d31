"""Camera device: OpenCV capture (device or video file) or a synthetic pattern, published as
sensor_msgs/Image, optionally recorded to MP4 with a per-frame timestamp table.

:mod:`.sources` and :mod:`.recorder` are plain Python (no ROS); :mod:`.node` is the thin ROS node.
"""
