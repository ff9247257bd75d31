"""What the GPIO node does, without ROS: commands on named devices, checked, then run on a backend.

Every command goes through here, so the checks (unknown device, wrong direction, durations that are not
positive or exceed a valve's ``max_open_ms``) hold on every path: topic, service, reward, calibration.
Errors are :class:`CommandError` (or the config/backend/calibration errors) with a message naming the
device and the fix; the node logs them (topics) or returns them (services) and stays up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from autopilot_hardware.gpio.backends import Backend, BackendError
from autopilot_hardware.gpio.calibration import CalibrationError, CalibrationStore, describe
from autopilot_hardware.gpio.config import ConfigError, Device, check_high_time, lookup

MODE_LEVEL, MODE_PULSE, MODE_PWM, MODE_TRAIN = 0, 1, 2, 3  # DigitalOutput.MODE_*
#: What a command can fail with; all carry a one-line message for the user.
COMMAND_ERRORS = (ConfigError, BackendError, CalibrationError)


@dataclass(frozen=True)
class Done:
    tick_us: int
    message: str = ''


class GpioController:
    def __init__(self, table: Mapping[str, Device], backend: Backend, store: CalibrationStore | None = None) -> None:
        self.table = dict(table)
        self.backend = backend
        self.store = store
        self.by_pin = {d.pin: d for d in self.table.values()}

    def claim_all(self) -> None:
        """Claim every pin; BackendError names the device whose pin failed."""
        for dev in self.table.values():
            try:
                if dev.is_input:
                    self.backend.claim_input(dev.pin, dev.pull, dev.edge, dev.glitch_us)
                else:
                    self.backend.claim_output(dev.pin)
            except BackendError as exc:
                raise BackendError(f'device {dev.name!r} on pin {dev.pin}: {exc}') from None

    def output(self, device: str, mode: int, *, level: bool = False, pulse_us: int = 0, pwm_duty: float = 0.0,
               pwm_frequency_hz: float = 0.0, train_off_us: int = 0, train_count: int = 0) -> Done:
        dev = lookup(self.table, device, want_input=False)
        b = self.backend
        if mode == MODE_LEVEL:
            if level and dev.max_open_us:
                # A valve is never left open: "high" is an opening of its maximum open time.
                return Done(b.pulses(dev.pin, dev.max_open_us, 0, 1),
                            f'{dev.name}: high capped at max_open_ms {dev.max_open_ms:g} ms')
            return Done(b.write(dev.pin, level))
        if mode == MODE_PULSE:
            check_high_time(dev, pulse_us)
            return Done(b.pulses(dev.pin, pulse_us, 0, 1))
        if mode == MODE_TRAIN:
            if train_count < 1:
                raise ConfigError(f'{dev.name}: train_count must be >= 1 (got {train_count})')
            check_high_time(dev, pulse_us, 'train pulse')
            if train_count > 1 and train_off_us <= 0:
                raise ConfigError(f'{dev.name}: train_off_us must be > 0 between pulses (got {train_off_us})')
            return Done(b.pulses(dev.pin, pulse_us, train_off_us, train_count))
        if mode == MODE_PWM:
            if dev.max_open_us:
                raise ConfigError(f'{dev.name}: PWM is not allowed on a valve (it would stay open); '
                                  f'use pulses or set devices.{dev.name}.kind')
            if not 0.0 <= pwm_duty <= 1.0:
                raise ConfigError(f'{dev.name}: pwm_duty must be in [0, 1] (got {pwm_duty})')
            freq = pwm_frequency_hz if pwm_frequency_hz > 0 else dev.pwm_frequency_hz
            return Done(b.pwm(dev.pin, freq, pwm_duty))
        raise ConfigError(f'{dev.name}: unknown mode {mode} (0 level, 1 pulse, 2 pwm, 3 train)')

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
        open_ms = self._store().open_ms(dev.name, volume_ul)
        open_us = round(open_ms * 1000)
        note = f'{dev.name}: {volume_ul:g} uL -> {open_ms:.2f} ms'
        if dev.max_open_us and open_us > dev.max_open_us:
            open_us = dev.max_open_us
            note += f', capped at max_open_ms {dev.max_open_ms:g} ms'
        return Done(self.backend.pulses(dev.pin, open_us, 0, 1), note)

    def calibrate(self, device: str, n_openings: int, open_ms: float, interval_ms: float) -> tuple[Done, float]:
        """Start ``n_openings`` openings; returns the start and the run's duration in seconds."""
        dev = self._valve(device)
        if n_openings < 1:
            raise ConfigError(f'{dev.name}: n_openings must be >= 1 (got {n_openings})')
        open_us = round(open_ms * 1000)
        check_high_time(dev, open_us, 'opening')
        off_us = round(interval_ms * 1000)
        if n_openings > 1 and off_us <= 0:
            raise ConfigError(f'{dev.name}: interval_ms must be > 0 between openings (got {interval_ms})')
        start = self.backend.pulses(dev.pin, open_us, off_us, n_openings)
        duration = (n_openings * open_us + (n_openings - 1) * off_us) / 1e6
        return Done(start, f'{dev.name}: {n_openings} x {open_ms:g} ms every {(open_us + off_us) / 1000:g} ms, '
                           f'done in {duration:.2f} s'), duration

    def record(self, device: str, n_openings: int, open_ms: float, measured_volume_ul: float) -> tuple[list[float], int, str]:
        dev = self._valve(device)
        store = self._store()
        store.record(dev.name, n_openings, open_ms, measured_volume_ul)
        coefficients = store.fit(dev.name)
        n = len(store.used_points(dev.name))
        return coefficients, n, describe(dev.name, coefficients, n)

    def close(self) -> None:
        self.backend.close()
