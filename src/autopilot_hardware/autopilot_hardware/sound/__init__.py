"""The sound stimulus server: render sounds once (render), mix and clock them (mixer), play them through
PortAudio or a real-time null device (backends); :mod:`.node` is the thin ROS node over these."""
