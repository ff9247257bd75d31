"""GPIO backends: ``sim`` (software timing, tested here), ``pigpio`` (pigpiod) and ``lgpio`` (gpiochip).

All three report edges as :class:`Edge` (pin, level, 32-bit tick, unwrapped ``tick_us``) to one callback,
from their own thread, and run timed outputs (pulses, trains) on their own timing -- pigpio waves, lgpio
tx_pulse, the sim's timing thread -- so no ROS callback ever sleeps. Output changes are reported as edges
too (pigpio and sim from the pin's level; lgpio when commanded, since it cannot watch its own outputs).

Levels are logical on this interface: ``True`` is an output's active level. An output claimed
``active_low`` is driven electrically low when active and high when inactive -- from its claim on, so
``all_low`` (every output inactive) closes an active-low valve by driving its pin high. pigpio inverts in
this module, lgpio has the kernel invert (the line's active-low flag), the sim keeps both levels
(:meth:`SimBackend.electrical`).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from autopilot_hardware.gpio.limits import Step, train_steps
from autopilot_hardware.gpio.scheduler import Scheduler, run_series
from autopilot_hardware.gpio.ticks import WRAP, TickUnwrapper, monotonic_us


class BackendError(RuntimeError):
    """The backend cannot do what was asked; the message names the pin or daemon and the fix."""


@dataclass(frozen=True)
class Edge:
    pin: int
    level: bool
    tick: int       # as the backend reports it (32-bit, wraps)
    tick_us: int    # unwrapped microseconds since the backend started


EdgeHandler = Callable[[Edge], None]


class Backend(ABC):
    name = ''
    #: Highest pin number this backend can address.
    pin_limit = 53

    def __init__(self, on_edge: EdgeHandler) -> None:
        self.on_edge = on_edge
        self.outputs: set[int] = set()
        self.active_low: set[int] = set()

    @abstractmethod
    def now_us(self) -> int:
        """The current tick, unwrapped microseconds since start (for TickClock and command acks)."""

    @abstractmethod
    def claim_input(self, pin: int, pull: str, edge: str, glitch_us: int) -> None: ...

    @abstractmethod
    def claim_output(self, pin: int, active_low: bool = False) -> None:
        """Claim ``pin`` as an output, inactive (electrically high when ``active_low``)."""

    @abstractmethod
    def write(self, pin: int, level: bool) -> int:
        """Set an output (cancelling any pulse train on it); returns tick_us."""

    @abstractmethod
    def pulses(self, pin: int, high_us: int, low_us: int, count: int) -> int:
        """``count`` pulses high ``high_us`` then low ``low_us``, on the backend's timing; returns tick_us."""

    @abstractmethod
    def series(self, pin: int, steps: Sequence[Step], repeat: int) -> int:
        """Each (level, us) step in order, ``repeat`` times, then low; on the backend's timing; returns tick_us."""

    @abstractmethod
    def pwm(self, pin: int, frequency_hz: float, duty: float) -> int: ...

    def simulate(self, pin: int, level: bool, hold_us: int) -> int:
        raise BackendError(f'simulated inputs need backend sim, this node runs {self.name}')

    def _emit(self, pin: int, level: bool, t_us: int) -> None:
        self.on_edge(Edge(pin, level, t_us % WRAP, t_us))

    def _emit_now(self, pin: int, level: bool) -> int:
        """Report ``pin`` at ``level`` as of now (an edge the backend cannot watch); returns its tick_us."""
        t = self.now_us()
        self._emit(pin, level, t)
        return t

    def all_low(self) -> None:
        """Drive every claimed output inactive, stopping timed outputs (best effort: never raises)."""
        for pin in sorted(self.outputs):
            try:
                self.write(pin, False)
            except Exception:  # noqa: BLE001, S110 - a safety path must try every pin
                pass

    def close(self) -> None:
        self.all_low()


class SimBackend(Backend):
    """Software GPIO: level changes on a :class:`~.scheduler.Scheduler` thread, on the monotonic microsecond clock.

    Timing is the scheduler's (tens of microseconds idle, ~1 ms under load). Edges carry the time the level
    actually changed, not the time it was meant to, like real hardware. Trains and series are scheduled from
    their nominal start, so errors do not accumulate. The glitch filter works like pigpio's: a new level counts
    only if it stays ``glitch_us``, and is then reported with the tick of its first edge. PWM is reported as one
    edge (high when duty > 0), not as a stream of 800 Hz edges. Levels reported are logical; an active-low
    output's pin is the inverse (:meth:`electrical`), as a scope on the real pin would show.
    """

    name = 'sim'
    pin_limit = 27  # the 40-pin header's BCM GPIOs

    def __init__(self, on_edge: EdgeHandler) -> None:
        super().__init__(on_edge)
        self._epoch = monotonic_us()
        self._lock = threading.RLock()
        self._level: dict[int, bool] = {}          # driven output level (logical) / raw input level
        self._reported: dict[int, bool] = {}       # input level after the glitch filter
        self._inputs: dict[int, tuple[str, int]] = {}  # pin -> (edge filter, glitch_us)
        self._gen: dict[int, int] = {}             # bumps cancel scheduled actions of a pin
        self._changed_at: dict[int, int] = {}      # input pin -> tick of its last raw change
        self._timer = Scheduler(self.now_us, 'gpio-sim-timing')

    def now_us(self) -> int:
        return monotonic_us() - self._epoch

    def electrical(self, pin: int) -> bool:
        """The voltage on ``pin``: an output's level, inverted when it is active-low."""
        with self._lock:
            return self._level[pin] != (pin in self.active_low)

    # -- pins ----------------------------------------------------------------------------------------
    def claim_input(self, pin: int, pull: str, edge: str, glitch_us: int) -> None:
        with self._lock:
            self._inputs[pin] = (edge, glitch_us)
            self._level[pin] = self._reported[pin] = pull == 'up'
            self._gen[pin] = 0

    def claim_output(self, pin: int, active_low: bool = False) -> None:
        with self._lock:
            self.outputs.add(pin)
            if active_low:
                self.active_low.add(pin)
            self._level[pin] = False
            self._gen[pin] = 0

    def _set_output(self, pin: int, level: bool, t_us: int) -> None:
        if self._level[pin] != level:
            self._level[pin] = level
            self._emit(pin, level, t_us)

    def write(self, pin: int, level: bool) -> int:
        with self._lock:
            self._gen[pin] += 1
            t = self.now_us()
            self._set_output(pin, level, t)
            return t

    def pulses(self, pin: int, high_us: int, low_us: int, count: int) -> int:
        return self.series(pin, train_steps(high_us, low_us, count), count)

    def series(self, pin: int, steps: Sequence[Step], repeat: int) -> int:
        with self._lock:
            self._gen[pin] += 1
            gen = self._gen[pin]
            t0 = self.now_us()
            self._set_output(pin, steps[0][0], t0)

            def apply(level: bool, t_us: int) -> bool:
                with self._lock:
                    if self._gen[pin] != gen:
                        return False
                    self._set_output(pin, level, t_us)
                    return True
            run_series(self._timer, t0, steps, repeat, apply)
            return t0

    def pwm(self, pin: int, frequency_hz: float, duty: float) -> int:
        return self.write(pin, duty > 0)

    def simulate(self, pin: int, level: bool, hold_us: int) -> int:
        with self._lock:
            if pin not in self._inputs:
                raise BackendError(f'pin {pin} is not a claimed input')
            self._gen[pin] += 1  # a new command replaces a pending automatic release
            gen = self._gen[pin]
            t = self.now_us()
            self._raw_input(pin, level, t)
            if hold_us > 0:
                def release(t_us: int) -> None:
                    with self._lock:
                        if self._gen[pin] == gen:
                            self._raw_input(pin, not level, t_us)
                self._timer.at(t + hold_us, release)
            return t

    def _raw_input(self, pin: int, level: bool, t_us: int) -> None:
        if self._level[pin] == level:
            return
        self._level[pin] = level
        edge, glitch_us = self._inputs[pin]
        if glitch_us <= 0:
            self._report(pin, level, t_us, edge)
            return

        def settle(_now: int) -> None:
            # Steady for glitch_us since t_us: report with the first edge's tick (as pigpio does).
            with self._lock:
                if self._level[pin] == level and self._changed_at.get(pin) == t_us:
                    self._report(pin, level, t_us, edge)
        self._changed_at[pin] = t_us
        self._timer.at(t_us + glitch_us, settle)

    def _report(self, pin: int, level: bool, t_us: int, edge: str) -> None:
        if self._reported[pin] == level:
            return
        self._reported[pin] = level
        if edge == 'both' or (edge == 'rising') == level:
            self._emit(pin, level, t_us)

    def close(self) -> None:
        self.all_low()
        self._timer.close()


class PigpioBackend(Backend):
    """pigpiod over its socket: edge callbacks with pigpio's tick, pulses as waves.

    pigpio samples levels every 5 us (its default) and timestamps edges with the Pi's 1 MHz system timer,
    32-bit, wrapping every 71.6 min: ticks are unwrapped with TickUnwrapper. Outputs get callbacks too, so
    output edges carry real ticks. Pulses and trains are pigpio waves (wave_add_generic + wave_create +
    wave_send_once): DMA-timed, microsecond accurate. pigpio transmits ONE wave at a time, so a single pulse
    asked for while another pin's wave runs is timed in software instead (high now, low on a timer, ~1 ms):
    queued behind the other wave it would start late, and a valve's later openings would run into it. A
    train or series asked for then is refused (BackendError) rather than delayed. pigpio knows no active-low
    pins: their levels are inverted here, in writes, waves, PWM duty and the levels callbacks report.
    """

    name = 'pigpio'

    def __init__(self, on_edge: EdgeHandler, host: str, port: int) -> None:
        super().__init__(on_edge)
        import pigpio
        self._pigpio = pigpio
        self.pi = pigpio.pi(host, port, show_errors=False)
        if not self.pi.connected:
            raise BackendError(f'cannot reach pigpiod at {host}:{port}: start it on the Pi (`sudo pigpiod`, or '
                               f'`sudo systemctl enable --now pigpiod`), fix pigpio_host/pigpio_port, '
                               f'or use backend:=sim')
        self._unwrap = TickUnwrapper(self.pi.get_current_tick())
        self._callbacks: list[object] = []
        self._waves: list[int] = []
        self._wave_pins: dict[int, int] = {}
        self._wave_lock = threading.Lock()
        self._soft: dict[int, int] = {}  # pin -> generation: a newer command cancels a software-timed pulse
        # Pins running PWM: their callbacks are muted (an 800 Hz LED would be 1600 events/s), its level is
        # reported once when set, as the sim and lgpio do.
        self._pwm: set[int] = set()

    def now_us(self) -> int:
        return self._unwrap(self.pi.get_current_tick())

    def _call(self, name: str, *args: object, hint: str = '') -> int:
        """``self.pi.<name>(*args)``; pigpio's errors (raised or returned) become one-line BackendErrors."""
        call = f'{name}{args}' if len(repr(args)) < 60 else name
        try:
            result = getattr(self.pi, name)(*args)
        except self._pigpio.error as exc:
            raise BackendError(f'pigpio {call}: {getattr(exc, "value", exc)}{hint}') from None
        if isinstance(result, int) and result < 0:
            raise BackendError(f'pigpio {call}: {self._pigpio.error_text(result)}{hint}')
        return result

    def _pin_level(self, pin: int, level: bool) -> int:
        """The electrical level that makes ``pin`` logically ``level``."""
        return int(level != (pin in self.active_low))

    def _cb(self, pin: int, level: int, tick: int) -> None:
        if level == 2 or pin in self._pwm:  # a watchdog timeout; a PWM's own edges (its level was reported once)
            return
        self.on_edge(Edge(pin, bool(level) != (pin in self.active_low), tick, self._unwrap(tick)))

    def claim_input(self, pin: int, pull: str, edge: str, glitch_us: int) -> None:
        pg = self._pigpio
        self._call('set_mode', pin, pg.INPUT)
        pud = {'up': pg.PUD_UP, 'down': pg.PUD_DOWN, 'off': pg.PUD_OFF}[pull]
        self._call('set_pull_up_down', pin, pud)
        if glitch_us:
            self._call('set_glitch_filter', pin, glitch_us)
        flag = {'rising': pg.RISING_EDGE, 'falling': pg.FALLING_EDGE, 'both': pg.EITHER_EDGE}[edge]
        self._callbacks.append(self.pi.callback(pin, flag, self._cb))

    def claim_output(self, pin: int, active_low: bool = False) -> None:
        if active_low:
            self.active_low.add(pin)
        # The inactive level first, then output mode: the pin never shows its active level, not even briefly.
        self._call('write', pin, self._pin_level(pin, False))
        self._call('set_mode', pin, self._pigpio.OUTPUT)
        self.outputs.add(pin)
        self._callbacks.append(self.pi.callback(pin, self._pigpio.EITHER_EDGE, self._cb))

    def _take_pin(self, pin: int) -> int | None:
        """Before a command on ``pin`` (with _wave_lock held): what runs on the pin is replaced, as on the other
        backends (the valve limit counts on it). Its software-timed pulse is cancelled and its own wave stopped
        -- only its own: stopping a wave freezes its pins where they are, so stopping another pin's valve pulse
        would leave that valve open. Returns the id of another pin's wave still sending, or None."""
        self._soft[pin] = self._soft.get(pin, 0) + 1
        if pin in self._pwm:
            # The command ends the PWM from a known level: inactive, reported (the muted callbacks said nothing
            # since the PWM began), so the command's own edges come back through the callback as usual.
            self._pwm.discard(pin)
            self._call('write', pin, self._pin_level(pin, False))
            self._emit_now(pin, False)
        current = self.pi.wave_tx_at() if self.pi.wave_tx_busy() else None
        if current is not None and self._wave_pins.get(current) == pin:
            self.pi.wave_tx_stop()
            return None
        return current if current in self._wave_pins else None

    def write(self, pin: int, level: bool) -> int:
        with self._wave_lock:
            self._take_pin(pin)
            self._call('write', pin, self._pin_level(pin, level))
        return self.now_us()

    def pulses(self, pin: int, high_us: int, low_us: int, count: int) -> int:
        return self.series(pin, train_steps(high_us, low_us, count), count)

    def series(self, pin: int, steps: Sequence[Step], repeat: int) -> int:
        pg = self._pigpio
        with self._wave_lock:
            current = self._take_pin(pin)
            if current is not None:
                # pigpio sends one wave at a time: queued behind another pin's wave, this pulse would start late
                # and a valve's openings would run into each other. A single pulse is timed in software instead
                # (~1 ms); a train or series must wait.
                if repeat != 1 or len(steps) != 1 or not steps[0][0]:
                    raise BackendError(f'pin {pin}: pigpio is sending the wave of pin {self._wave_pins[current]} '
                                       f'(one wave at a time): a train or series cannot start before it ends; '
                                       f'try again then')
                return self._soft_pulse(pin, steps[0][1])
        flat = list(steps) * repeat
        while flat and not flat[-1][0]:
            flat.pop()  # trailing low steps: the closing pulse below sets the level
        mask = 1 << pin

        def pulse(level: bool, us: int) -> object:
            high = self._pin_level(pin, level)
            return pg.pulse(mask if high else 0, 0 if high else mask, us)
        # The end only needs to set the inactive level: 1 us keeps the wave short.
        pulses = [*(pulse(level, us) for level, us in flat), pulse(False, 1)]
        with self._wave_lock:
            self._collect_waves()
            self._call('wave_add_new')
            self._call('wave_add_generic', pulses, hint=f' (pin {pin})')
            wid = self._call('wave_create', hint=f' (pin {pin}: too many pulses? pigpio holds ~12000)')
            self._waves.append(wid)
            self._wave_pins[wid] = pin
            t = self.now_us()
            self._call('wave_send_using_mode', wid, pg.WAVE_MODE_ONE_SHOT_SYNC)
        return t

    def _soft_pulse(self, pin: int, high_us: int) -> int:
        """High now, low ``high_us`` later on a timer thread of its own (called with _wave_lock held)."""
        token = self._soft[pin]
        self._call('write', pin, self._pin_level(pin, True))
        t = self.now_us()

        def low() -> None:
            with self._wave_lock:
                if self._soft.get(pin) == token:
                    self._call('write', pin, self._pin_level(pin, False))
        timer = threading.Timer(high_us / 1e6, low)
        timer.daemon = True
        timer.start()
        return t

    def _collect_waves(self) -> None:
        """Delete finished waves (pigpio has a limited number of wave ids and pulses).

        Waves are kept in creation order; those before the one transmitting are done, the ones after it
        are queued (ONE_SHOT_SYNC) and must stay. When nothing transmits, all are done.
        """
        current = self.pi.wave_tx_at() if self.pi.wave_tx_busy() else None
        done = self._waves[:self._waves.index(current)] if current in self._waves else \
            (list(self._waves) if current is None else [])
        for wid in done:
            self.pi.wave_delete(wid)
            self._waves.remove(wid)
            self._wave_pins.pop(wid, None)

    def pwm(self, pin: int, frequency_hz: float, duty: float) -> int:
        with self._wave_lock:
            self._take_pin(pin)  # a wave or software pulse running on the pin would overwrite the PWM
        self._call('set_PWM_frequency', pin, int(frequency_hz))
        self._call('set_PWM_range', pin, 1000)
        # Active-low: the pin is low for the active fraction of each period, i.e. high for the rest.
        on = duty if pin not in self.active_low else 1.0 - duty
        self._pwm.add(pin)
        self._call('set_PWM_dutycycle', pin, round(on * 1000))
        return self._emit_now(pin, duty > 0)

    def all_low(self) -> None:
        try:
            self.pi.wave_tx_stop()
        except Exception:  # noqa: BLE001, S110
            pass
        super().all_low()

    def close(self) -> None:
        self.all_low()
        for cb in self._callbacks:
            cb.cancel()  # type: ignore[attr-defined]
        self.pi.stop()


class LgpioBackend(Backend):
    """A gpiochip through lgpio (Pi 5 and any Linux board): alerts on inputs, tx_pulse for pulses.

    lgpio timestamps edges in nanoseconds of the kernel's line-event clock (since boot on current kernels);
    they are turned into microseconds since the backend started. Pulses are lgpio's software-timed tx_pulse
    (its own thread, ~10 us jitter). lgpio cannot watch a line it drives, so output events are reported
    at command time; the end of a pulse is not reported. Active-low outputs are claimed with the line's
    active-low flag, so the kernel inverts every write, pulse and PWM. A series is timed by a
    :class:`~.scheduler.Scheduler` thread (lgpio's waves queue behind each other; ours replace).
    """

    name = 'lgpio'
    pin_limit = 255  # GpioEvent.pin is uint8

    def __init__(self, on_edge: EdgeHandler, chip: int) -> None:
        super().__init__(on_edge)
        import lgpio
        self._lg = lgpio
        try:
            self.h = lgpio.gpiochip_open(chip)
        except lgpio.error as exc:
            raise BackendError(f'cannot open /dev/gpiochip{chip} ({getattr(exc, "value", exc)}): no GPIO chip here or no permission '
                               f'(add the user to group gpio); set lgpio_chip, or use backend:=sim') from None
        info = lgpio.gpio_get_chip_info(self.h)
        self.pin_limit = min(int(info[1]) - 1, 255)
        self._epoch_ns = time.monotonic_ns()
        self._tick_offset_ns: int | None = None
        self._callbacks: list[object] = []
        self._gen: dict[int, int] = {}  # bumps cancel a running series of a pin
        self._timer: Scheduler | None = None
        self._lock = threading.Lock()

    def now_us(self) -> int:
        return (time.monotonic_ns() - self._epoch_ns) // 1000

    def _call(self, fn: Callable[..., int], *args: object) -> int:
        try:
            result = fn(self.h, *args)
        except self._lg.error as exc:
            raise BackendError(f'lgpio {fn.__name__}{args}: {getattr(exc, "value", exc)}') from None
        return result

    def _cb(self, _chip: int, pin: int, level: int, tick_ns: int) -> None:
        if level == 2:
            return
        if self._tick_offset_ns is None:
            # Old kernels stamp line events with CLOCK_REALTIME, newer ones with CLOCK_MONOTONIC: the first
            # edge tells which (they differ by decades), later ones are moved onto the monotonic clock.
            realtime = abs(tick_ns - time.time_ns()) < abs(tick_ns - time.monotonic_ns())
            self._tick_offset_ns = time.monotonic_ns() - time.time_ns() if realtime else 0
        tick_us = (tick_ns + self._tick_offset_ns - self._epoch_ns) // 1000
        self.on_edge(Edge(pin, bool(level), (tick_ns // 1000) % WRAP, tick_us))

    def claim_input(self, pin: int, pull: str, edge: str, glitch_us: int) -> None:
        lg = self._lg
        lflags = {'up': lg.SET_PULL_UP, 'down': lg.SET_PULL_DOWN, 'off': lg.SET_PULL_NONE}[pull]
        eflags = {'rising': lg.RISING_EDGE, 'falling': lg.FALLING_EDGE, 'both': lg.BOTH_EDGES}[edge]
        self._call(lg.gpio_claim_alert, pin, eflags, lflags)
        if glitch_us:
            self._call(lg.gpio_set_debounce_micros, pin, glitch_us)
        self._callbacks.append(lg.callback(self.h, pin, eflags, self._cb))

    def claim_output(self, pin: int, active_low: bool = False) -> None:
        # Level 0 is logical: with SET_ACTIVE_LOW the kernel drives the line high, from the claim on.
        self._call(self._lg.gpio_claim_output, pin, 0, self._lg.SET_ACTIVE_LOW if active_low else 0)
        if active_low:
            self.active_low.add(pin)
        self.outputs.add(pin)
        self._gen[pin] = 0

    def _take_pin(self, pin: int) -> int:
        """Stop what runs on ``pin`` (lgpio pulses, our series); returns the pin's new generation."""
        with self._lock:
            self._gen[pin] = self._gen.get(pin, 0) + 1
            gen = self._gen[pin]
        self._call(self._lg.tx_pulse, pin, 0, 0)
        return gen

    def write(self, pin: int, level: bool) -> int:
        self._take_pin(pin)
        self._call(self._lg.gpio_write, pin, int(level))
        return self._emit_now(pin, level)

    def series(self, pin: int, steps: Sequence[Step], repeat: int) -> int:
        gen = self._take_pin(pin)
        if self._timer is None:
            self._timer = Scheduler(self.now_us, 'gpio-lgpio-series')

        def apply(level: bool, _t_us: int) -> bool:
            with self._lock:
                if self._gen.get(pin) != gen:
                    return False
                self._call(self._lg.gpio_write, pin, int(level))
            self._emit_now(pin, level)
            return True
        t0 = self.now_us()
        apply(steps[0][0], t0)
        run_series(self._timer, t0, steps, repeat, apply)
        return t0

    def pulses(self, pin: int, high_us: int, low_us: int, count: int) -> int:
        self._take_pin(pin)  # replace what runs on the pin, never queue behind it
        self._call(self._lg.tx_pulse, pin, high_us, max(low_us, 1), 0, count)
        return self._emit_now(pin, True)

    def pwm(self, pin: int, frequency_hz: float, duty: float) -> int:
        self._take_pin(pin)
        self._call(self._lg.tx_pwm, pin, frequency_hz, duty * 100.0)
        return self._emit_now(pin, duty > 0)

    def close(self) -> None:
        self.all_low()
        if self._timer is not None:
            self._timer.close()
        for cb in self._callbacks:
            cb.cancel()  # type: ignore[attr-defined]
        self._lg.gpiochip_close(self.h)


def make_backend(name: str, on_edge: EdgeHandler, *, host: str = 'localhost', port: int = 8888,
                 chip: int = 0) -> Backend:
    if name == 'sim':
        return SimBackend(on_edge)
    if name == 'pigpio':
        return PigpioBackend(on_edge, host, port)
    if name == 'lgpio':
        return LgpioBackend(on_edge, chip)
    raise BackendError(f'unknown backend {name!r}: choose sim, pigpio or lgpio')
