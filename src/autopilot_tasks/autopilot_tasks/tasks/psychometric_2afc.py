"""Psychometric 2AFC: tones graded from "clearly left" to "clearly right" around a category boundary.

The 2AFC task (its trial, correction trials and bias correction are 2AFC's, see ``two_afc.py``) with a tone per
stimulus level instead of two fixed ones. A level ``x`` in [-1, 1] is the tone ``boundary_hz * 2 ** (x *
span_octaves)``: below the boundary (x < 0) the target is left, above it right. ``levels`` lists the distances
from the boundary that are used, each on both sides and each drawn equally often; small ones are hard. Every trial
records its ``stim_level``, so the fraction of right responses per level is the psychometric curve: drawn live by
the Terminal (``Psychometric``), and the virtual subject's p(right | x) when it plays the animal.
"""

from __future__ import annotations

from autopilot_tasks.task import (
    Field,
    Line,
    Param,
    Plot,
    Points,
    Psychometric,
    RollingMean,
    Shade,
    Sound,
    StimulusSet,
    number_list,
)
from autopilot_tasks.tasks.two_afc import RAMP_MS, TwoAFC


def parse_levels(text: str) -> list[float]:
    """Distances from the boundary in (0, 1] from ``'0.1 0.25 1'``, ascending; ValueError naming the bad one."""
    levels = number_list(text, 'levels', lo=0.0, hi=1.0, at_most=16, lo_open=True)
    if len(set(levels)) != len(levels):
        raise ValueError('a level is listed twice')
    return sorted(levels)


class PsychometricTwoAFC(TwoAFC):
    """Psychometric 2AFC: graded tones around a boundary, the side says which half the tone is in."""

    # Parameters (2AFC's, with these instead of its two tones)
    left_tone_hz = None
    right_tone_hz = None
    boundary_hz = Param(8000.0, 'Hz', 'The category boundary: lower tones mean left, higher ones right',
                        min=200.0, max=16000.0)
    span_octaves = Param(1.0, 'octaves', 'Distance from the boundary of a level-1 tone', min=0.05, max=3.0)
    levels = Param('0.1 0.25 0.5 1', '', 'Distances from the boundary (0-1], each used on both sides')

    speaker = Sound('A tone per level (tone_m0_5 ... tone_p1); punishment noise')

    # Trial data: 2AFC's, and the level
    stim_level = Field(float, '', 'Signed level of the tone: < 0 left of the boundary, > 0 right')

    plot = Plot(
        Points('response', y={'left': 0, 'none': 0.5, 'right': 1}, color_by='correct'),
        RollingMean('correct', window=20, chance=0.5, skip='correction'),
        Shade('correction'),
        Psychometric('stim_level', choice='response', positive='right'),
        Line('rt_ms'),
        title='Psychometric 2AFC',
    )

    @classmethod
    def check_params(cls, values: dict) -> str | None:
        try:
            parse_levels(values['levels'])
        except ValueError as exc:
            return f'levels {values["levels"]!r}: {exc}'
        top = values['boundary_hz'] * 2 ** values['span_octaves']
        if top > 20000.0:
            return (f'boundary_hz {values["boundary_hz"]:g} Hz and span_octaves {values["span_octaves"]:g} put the '
                    f'highest tone at {top:.0f} Hz, above 20 kHz')
        return None

    def tone_set(self) -> StimulusSet:
        """A tone per signed level, grouped by the side it calls for."""
        def tone(x: float) -> dict:
            return {'id': f'tone_{x:+g}'.replace('.', '_').replace('+', 'p').replace('-', 'm'), 'level': x,
                    'kind': 'tone', 'frequency_hz': self.boundary_hz * 2 ** (x * self.span_octaves),
                    'duration_ms': self.tone_ms, 'amplitude': self.tone_amplitude, 'ramp_ms': RAMP_MS}
        levels = parse_levels(self.levels)
        return StimulusSet.from_dict({'groups': {'left': [tone(-x) for x in levels],
                                                 'right': [tone(x) for x in levels]}})

    def start_trial(self) -> None:
        super().start_trial()
        level = next(t.level for t in self.tones.stimuli.stimuli() if t.id == self.stim)
        self.stim_level = float(level if level is not None else 0.0)
