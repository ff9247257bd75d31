"""The Terminal window: a PyQt5 + pyqtgraph client of the terminal node (see docs/gui.md)."""
