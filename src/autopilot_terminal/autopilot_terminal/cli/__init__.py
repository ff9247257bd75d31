"""``autopilot`` commands of the terminal package: bag, export, plot, subject."""
