"""Echo: the output follows the poke, nothing else.

Poke in -> output high, poke out -> output low. Use it to check a rig's wiring (break the beam, the LED
lights) and to measure the closed loop input edge -> pilot -> output (bench/closed_loop.py drives it).
There is no scoring and no timer: a trial is just ``pokes_per_trial`` pokes, counted on the way out, so
the output is low again when a trial ends.
"""

from __future__ import annotations

from autopilot_tasks.task import Event, Field, Input, Line, Output, Param, Plot, Task, TrialTimes


class Echo(Task):
    """Echo: mirror a poke onto an output, for wiring checks and latency measurement."""

    # Parameters
    pokes_per_trial = Param(10, 'pokes', 'Pokes (in and out again) that make one trial', min=1, max=100_000)

    # Hardware: role = default device on the rig
    poke = Input('poke_center', description='The input mirrored (events poke_in, poke_out)')
    out = Output('led_center', kind='led', description='High while the poke is in')

    # Trial data
    n_pokes = Field(int, '', 'Pokes in this trial', default=0)

    score_field = None
    stages = ('mirror',)

    plot = Plot(Line('n_pokes'), TrialTimes(), title='Echo')

    def mirror(self, event: Event) -> None:
        if event == 'poke_in':
            self.out.on()
        elif event == 'poke_out':
            self.out.off()
            self.n_pokes += 1
            if self.n_pokes >= self.pokes_per_trial:
                self.end_trial()
