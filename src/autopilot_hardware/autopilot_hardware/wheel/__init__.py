"""A running wheel: counts from a USB mouse (evdev) or a simulation, published as velocity samples."""
