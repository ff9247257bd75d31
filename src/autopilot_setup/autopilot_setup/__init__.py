"""``autopilot setup``: one host configured as the lab's terminal or as a pilot (a rig), by a guided dialogue
or from an answers file, into a params file and systemd units (:mod:`.answers`, :mod:`.board`, :mod:`.render`,
:mod:`.dialogue`, :mod:`.command`)."""
