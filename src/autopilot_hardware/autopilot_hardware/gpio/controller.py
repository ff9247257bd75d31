"""What the GPIO node does, without ROS: commands on named devices, checked, then run on a backend.

Every command goes through here, so the checks (unknown device, wrong direction, numbers that are not
finite or in range, train bounds, and a valve's ``max_open_ms`` on the accumulated time of one opening:
:mod:`.limits`) hold on every path: topic, service, reward, calibration, whatever order commands come in.
Errors are one of ``COMMAND_ERRORS`` with a message naming the device and the fix; the node logs them
(topics) or returns them (services) and stays up. A refused command changes nothing on the pin.

An ``led_rgb`` is three PWM channels driven as one device: every mode shows its command's colour
(:mod:`.colors`) where other outputs go high. Its timed modes switch the three channels together on a
:class:`~.scheduler.Scheduler` thread (~1 ms, a visual cue's precision), since no backend times PWM changes.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from autopilot_core.checks import InputError, finite
from autopilot_hardware.gpio.backends import Backend, BackendError
from autopilot_hardware.gpio.calibration import CalibrationError, CalibrationStore
from autopilot_hardware.gpio.colors import OFF, RGB, WHITE, ColorError, parse_color
from autopilot_hardware.gpio.config import ConfigError, Device, check_high_time, lookup
from autopilot_hardware.gpio.limits import (
    LimitError,
    Step,
    ValveLimit,
    check_series,
    check_train,
    series_intervals,
    train_steps,
)
from autopilot_hardware.gpio.scheduler import Scheduler, run_series

MODE_LEVEL, MODE_PULSE, MODE_PWM, MODE_TRAIN, MODE_COLOR, MODE_SERIES = 0, 1, 2, 3, 4, 5  # DigitalOutput.MODE_*
#: What a command can fail with; all carry a one-line message for the user.
COMMAND_ERRORS = (ConfigError, BackendError, CalibrationError, LimitError, InputError, ColorError)
#: Longest calibration opening or gap a request may name (a minute).
MAX_CALIBRATION_MS = 60_000.0


@dataclass(frozen=True)
class Done:
    tick_us: int
    message: str = ''


class GpioController:
    def __init__(self, table: Mapping[str, Device], backend: Backend, store: CalibrationStore | None = None) -> None:
        self.table = dict(table)
        self.backend = backend
        self.store = store
        self.by_pin = {pin: d for d in self.table.values() for pin in d.pins}
        self.limits = {d.name: ValveLimit(d.name, d.max_open_us) for d in self.table.values() if d.max_open_us}
        # Commands come from the executor thread, the heartbeat check and the RGB scheduler; a plan is read and
        # changed as one.
        self._lock = threading.RLock()
        self._rgb_gen = {d.name: 0 for d in self.table.values() if d.rgb_pins}  # a bump drops a running series
        self._scheduler: Scheduler | None = None

    def claim_all(self) -> None:
        """Claim every pin; BackendError names the device whose pin failed."""
        for dev in self.table.values():
            for pin in dev.pins:
                try:
                    if dev.is_input:
                        self.backend.claim_input(pin, dev.pull, dev.edge, dev.glitch_us)
                    else:
                        self.backend.claim_output(pin, dev.active_low)
                except BackendError as exc:
                    raise BackendError(f'device {dev.name!r} on pin {pin}: {exc}') from None

    def output(self, device: str, mode: int, *, level: bool = False, pulse_us: int = 0, pwm_duty: float = 0.0,
               pwm_frequency_hz: float = 0.0, train_off_us: int = 0, train_count: int = 0, color: str = '',
               series_levels: Sequence[bool] = (), series_us: Sequence[int] = (), series_repeat: int = 0) -> Done:
        dev = lookup(self.table, device, want_input=False)
        if dev.rgb_pins:
            return self._rgb(dev, mode, level, pulse_us, train_off_us, train_count, color, series_levels,
                             series_us, series_repeat)
        if color:
            raise ConfigError(f'{dev.name}: a colour ({color[:40]!r}) is for led_rgb outputs; {dev.name} is a '
                              f'{dev.kind}: leave color empty')
        timed = self._timed_steps(dev, mode, pulse_us, train_off_us, train_count, series_levels, series_us,
                                  series_repeat)
        if timed is not None:
            return self._timed(dev, *timed)
        if mode == MODE_LEVEL:
            if level and dev.max_open_us:
                # A valve is never left open: "high" is an opening of what is left of its maximum open time.
                return self._timed(dev, [(True, dev.max_open_us)], 1, shorten=True, what='high')
            return self._write(dev, bool(level))
        if mode == MODE_COLOR:
            raise ConfigError(f'{dev.name}: MODE_COLOR is for led_rgb outputs; {dev.name} is a {dev.kind} '
                              f'(set devices.{dev.name}.kind: led_rgb, or use MODE_LEVEL or MODE_PWM)')
        if mode == MODE_PWM:
            if dev.max_open_us:
                raise ConfigError(f'{dev.name}: PWM is not allowed on a valve (it would stay open); '
                                  f'use pulses or set devices.{dev.name}.kind')
            duty = finite(f'{dev.name}: pwm_duty', pwm_duty, 0.0, 1.0)
            freq = finite(f'{dev.name}: pwm_frequency_hz', pwm_frequency_hz, 0.0, 40_000.0)
            with self._lock:
                return Done(self.backend.pwm(dev.pin, freq if freq >= 1.0 else dev.pwm_frequency_hz, duty))
        raise ConfigError(f'{dev.name}: unknown mode {mode} (0 level, 1 pulse, 2 pwm, 3 train, 4 color, 5 series)')

    @staticmethod
    def _timed_steps(dev: Device, mode: int, pulse_us: int, train_off_us: int, train_count: int,
                     series_levels: Sequence[bool], series_us: Sequence[int],
                     series_repeat: int) -> tuple[list[Step], int] | None:
        """(steps, repeat) of a pulse, train or series command, checked; None for the other modes."""
        if mode == MODE_PULSE:
            check_high_time(dev, pulse_us)
            return [(True, pulse_us)], 1
        if mode == MODE_TRAIN:
            if train_count < 1:
                raise ConfigError(f'{dev.name}: train_count must be >= 1 (got {train_count})')
            check_high_time(dev, pulse_us, 'train pulse')
            if train_count > 1 and train_off_us <= 0:
                raise ConfigError(f'{dev.name}: train_off_us must be > 0 between pulses (got {train_off_us})')
            return train_steps(pulse_us, train_off_us, train_count), train_count
        if mode == MODE_SERIES:
            repeat = max(series_repeat, 1)
            return check_series(dev.name, series_levels, series_us, repeat), repeat
        return None

    # -- led_rgb ---------------------------------------------------------------------------------------
    def _rgb(self, dev: Device, mode: int, level: bool, pulse_us: int, train_off_us: int, train_count: int,
             color: str, series_levels: Sequence[bool], series_us: Sequence[int], series_repeat: int) -> Done:
        if mode == MODE_COLOR:
            if not color:
                raise ColorError(f"{dev.name}: MODE_COLOR needs a colour (a name or #rrggbb; 'off' for dark)")
            return self._show(dev, parse_color(color))
        on = parse_color(color) if color else WHITE
        if mode == MODE_LEVEL:
            return self._show(dev, on if level else OFF)
        if mode == MODE_PWM:
            raise ConfigError(f"{dev.name}: an led_rgb is dimmed by its colour: MODE_COLOR with e.g. '#404040' "
                              f'(PWM sets one channel)')
        timed = self._timed_steps(dev, mode, pulse_us, train_off_us, train_count, series_levels, series_us,
                                  series_repeat)
        if timed is None:
            raise ConfigError(f'{dev.name}: unknown mode {mode} (0 level, 1 pulse, 3 train, 4 color, 5 series; '
                              f'2 pwm is refused for led_rgb)')
        steps, repeat = timed
        self._check_steps(dev, steps, repeat)
        with self._lock:
            done = self._show(dev, on if steps[0][0] else OFF)
            gen = self._rgb_gen[dev.name]
            if self._scheduler is None:
                self._scheduler = Scheduler(self.backend.now_us, 'gpio-rgb-series')

            def apply(step_level: bool, _now: int) -> bool:
                with self._lock:
                    if self._rgb_gen[dev.name] != gen:
                        return False
                    self._set_rgb(dev, on if step_level else OFF)
                    return True
            run_series(self._scheduler, done.tick_us, steps, repeat, apply)
            return done

    def _drop_rgb_series(self) -> None:
        """Every running RGB series stops at its next step (all_low, close)."""
        with self._lock:
            for name in self._rgb_gen:
                self._rgb_gen[name] += 1

    def _show(self, dev: Device, rgb: RGB) -> Done:
        """Show ``rgb`` on ``dev`` until the next command (a running series of it is dropped)."""
        with self._lock:
            self._rgb_gen[dev.name] += 1
            return Done(self._set_rgb(dev, rgb))

    def _set_rgb(self, dev: Device, rgb: RGB) -> int:
        ticks = [self.backend.pwm(pin, dev.pwm_frequency_hz, duty) for pin, duty in zip(dev.rgb_pins, rgb, strict=True)]
        return ticks[0]

    def _write(self, dev: Device, level: bool) -> Done:
        with self._lock:
            t = self.backend.write(dev.pin, level)
            lim = self.limits.get(dev.name)
            if lim is not None:  # only ever low here: a valve's "high" is a timed opening (output())
                lim.close(t)
            return Done(t)

    def _timed(self, dev: Device, steps: list[Step], repeat: int, *, shorten: bool = False,
               what: str = 'pulse') -> Done:
        """``steps`` ``repeat`` times on ``dev`` within its limits (a pulse and a train are series too);
        ``shorten``: a single opening is cut to what is left."""
        with self._lock:
            lim = self.limits.get(dev.name)
            note = ''
            if lim is not None:
                now = self.backend.now_us()
                if shorten:
                    high_us = steps[0][1]
                    left = lim.remaining_us(now)
                    if left <= 0:
                        wait = (lim.closed_until_us(now) - now) / 1000
                        raise LimitError(f'{dev.name}: {what} refused: the valve has had its max_open_ms '
                                         f'{dev.max_open_ms:g} ms in this opening; it may open again in {wait:.0f} ms')
                    if left < high_us:
                        note = f'{dev.name}: {what} shortened to {left / 1000:g} ms, what is left of max_open_ms ' \
                               f'{dev.max_open_ms:g} ms in this opening'
                        high_us = left
                    elif what == 'high':
                        note = f'{dev.name}: high capped at max_open_ms {dev.max_open_ms:g} ms'
                    steps = [(True, high_us)]
            self._check_steps(dev, steps, repeat)
            if lim is None:
                return Done(self._run(dev, steps, repeat), note)
            plan = series_intervals(now, steps, repeat)
            lim.allow(now, plan)
            t = self._run(dev, steps, repeat)
            lim.commit(now, plan)
            return Done(t, note)

    @staticmethod
    def _as_train(steps: list[Step]) -> tuple[int, int] | None:
        """(high_us, low_us) when ``steps`` are a pulse or a train's period (backends time those natively)."""
        if steps[0][0] and (len(steps) == 1 or (len(steps) == 2 and not steps[1][0])):
            return steps[0][1], steps[1][1] if len(steps) == 2 else 0
        return None

    def _check_steps(self, dev: Device, steps: list[Step], repeat: int) -> None:
        as_train = self._as_train(steps)
        if as_train is not None:
            check_train(dev.name, *as_train, repeat)
        else:
            check_series(dev.name, [lv for lv, _ in steps], [us for _, us in steps], repeat)

    def _run(self, dev: Device, steps: list[Step], repeat: int) -> int:
        as_train = self._as_train(steps)
        if as_train is not None:
            return self.backend.pulses(dev.pin, *as_train, repeat)
        return self.backend.series(dev.pin, steps, repeat)

    def all_low(self) -> None:
        """Every output inactive now (the heartbeat check, stop): nothing stays scheduled."""
        with self._lock:
            self._drop_rgb_series()
            self.backend.all_low()
            now = self.backend.now_us()
            for lim in self.limits.values():
                lim.close(now)

    def simulate(self, device: str, level: bool, hold_us: int) -> Done:
        dev = lookup(self.table, device, want_input=True)
        return Done(self.backend.simulate(dev.pin, level, hold_us))

    def _valve(self, device: str) -> Device:
        dev = lookup(self.table, device, want_input=False)
        if dev.kind != 'valve':
            raise ConfigError(f'{dev.name} is a {dev.kind} output, not a valve: set devices.{dev.name}.kind: valve')
        return dev

    def _store(self) -> CalibrationStore:
        if self.store is None:
            raise CalibrationError('this node has no calibration store')
        return self.store

    def reward(self, device: str, volume_ul: float) -> Done:
        dev = self._valve(device)
        # The store refuses a volume that is no plausible reward (NaN, 1e308, <= 0) and a fit that gives no time.
        open_ms = finite(f'{dev.name}: open time for {volume_ul:g} uL', self._store().open_ms(dev.name, volume_ul),
                         0.0, MAX_CALIBRATION_MS)
        open_us = round(open_ms * 1000)
        if open_us <= 0:
            raise CalibrationError(f'{dev.name}: {volume_ul:g} uL needs {open_ms:.3f} ms by the calibration: '
                                   f'calibrate the valve again (autopilot calibrate)')
        note = f'{dev.name}: {volume_ul:g} uL -> {open_ms:.2f} ms'
        if dev.max_open_us and open_us > dev.max_open_us:
            open_us = dev.max_open_us
            note += f', capped at max_open_ms {dev.max_open_ms:g} ms'
        done = self._timed(dev, [(True, open_us)], 1, shorten=True, what='reward')
        return Done(done.tick_us, '; '.join(m for m in (note, done.message) if m))

    def calibrate(self, device: str, n_openings: int, open_ms: float, interval_ms: float) -> tuple[Done, float]:
        """Start ``n_openings`` openings; returns the start and the run's duration in seconds."""
        dev = self._valve(device)
        if n_openings < 1:
            raise ConfigError(f'{dev.name}: n_openings must be >= 1 (got {n_openings})')
        open_us = round(finite(f'{dev.name}: open_ms', open_ms, 0.0, MAX_CALIBRATION_MS) * 1000)
        check_high_time(dev, open_us, 'opening')
        off_us = round(finite(f'{dev.name}: interval_ms', interval_ms, 0.0, MAX_CALIBRATION_MS) * 1000)
        if n_openings > 1 and off_us <= 0:
            raise ConfigError(f'{dev.name}: interval_ms must be > 0 between openings (got {interval_ms})')
        start = self._timed(dev, train_steps(open_us, off_us, n_openings), n_openings).tick_us
        duration = (n_openings * open_us + (n_openings - 1) * off_us) / 1e6
        return Done(start, f'{dev.name}: {n_openings} x {open_us / 1000:g} ms every {(open_us + off_us) / 1000:g} ms, '
                           f'done in {duration:.2f} s'), duration

    def record(self, device: str, n_openings: int, open_ms: float, measured_volume_ul: float, *,
               force: bool = False) -> tuple[list[float], int, str]:
        """Store a weighed point (``force``: even one that disagrees with the fit) and return the new fit."""
        dev = self._valve(device)
        store = self._store()
        store.record(dev.name, n_openings, open_ms, measured_volume_ul, force=force)
        return store.summary(dev.name)

    def close(self) -> None:
        with self._lock:
            self._drop_rgb_series()
            self.backend.close()
        if self._scheduler is not None:
            self._scheduler.close()
