"""The virtual subject: a psychometric model of an animal doing a 2AFC task or collecting free water (no ROS).

It plays the animal so a whole rig runs without hardware or mice; :mod:`autopilot_pilot.subject_node` wires
it to a rig's ``sound/onsets``, ``gpio/events`` and ``gpio/sim_input``. Everything here is plain Python on a
:class:`Clock` (the runner's clock protocol), so tests drive it with a fake clock.

Choice (signed stimulus value ``x``: negative = evidence for left, positive = for right)::

    p(right | x) = lapse / 2 + (1 - lapse) * logistic(slope * (x - bias)),   logistic(z) = 1 / (1 + exp(-z))

* ``bias`` is a shift of the curve along x: the point of subjective equality, where p(right) = 0.5.
  ``bias > 0`` needs more rightward evidence to go right, i.e. a *left*-biased animal.
* ``slope`` (1/x units) is the steepness at the 50 % point: dp/dx there is ``(1 - lapse) * slope / 4``.
* ``lapse`` is the probability that a choice is a random guess (a fair coin, whatever x is), so
  p(right) is confined to ``[lapse / 2, 1 - lapse / 2]``: the lapse floor and ceiling.
* ``miss_rate``: the probability that the animal does not respond to a stimulus at all (checked first;
  accuracy and p(right) are conditional on a response).

Each decision consumes exactly three draws of the *choice* stream (miss?, lapse?, side), responded or not,
so the k-th decision depends only on the seed, k, x_k and the parameters. Times come from a separate
*timing* stream: how many retries or free-water pokes happened (which depends on the task's timing) never
changes the choices. Both streams are ``random.Random`` seeded from ``seed`` (the timing one with the string
``f'{seed}/timing'``, which Python hashes deterministically, unlike ``hash()``).

Times are shifted lognormal (:class:`Delay`): ``min + LogNormal`` whose overall mean and standard deviation
are the given ones. Lognormal because measured reaction times are positive and right-skewed; the shift is
the non-decision (motor) time below which no response happens.

* reaction time: stimulus onset (the onset's ROS stamp, not its arrival) -> side poke, ``rt_*_ms``;
* center delay: end of a trial (a response, a miss's ``miss_timeout_ms``, or ``stimulus_wait_ms`` of
  waiting for a stimulus that never came) -> the next center poke, ``center_delay_*_ms`` (no shift);
* free water: interval between pokes, ``free_water_interval_*_ms`` (no shift).

Behaviour in mode ``2afc``: wait a center delay, poke the center, wait for a stimulus; a stimulus (whenever
it comes, except while a response is pending) is decided as above and answered after the reaction time;
then the next center delay starts. Mode ``gonogo`` is the same with one response port: a "right" decision is
a poke there after the reaction time, a "left" one is holding back (``withheld``), which sits out
``miss_timeout_ms`` like a miss; p(respond | x) = (1 - miss_rate) * p(right | x), so a go tone at x > 0 and a
no-go tone at x < 0 give the hit and false alarm rates. Mode ``detect`` never pokes the center: it listens,
and a stimulus (a gap in noise, x its log2 duration for example) is answered at the response port with the
same p(respond | x), never without one. In mode ``free_water``: every interval poke left or right; with
probability ``free_water_stay`` the port that was rewarded last, otherwise either with p = 0.5. Mode ``idle``
does nothing (it still counts rewards). With ``response_port`` ``wheel`` a "respond" decision is a run on the
running wheel rather than a poke (the node drives the simulated wheel).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Protocol

__all__ = [
    'MODES', 'SIDES', 'Clock', 'Counts', 'Decision', 'Delay', 'ParamsError', 'Response', 'SubjectParams',
    'VirtualSubject',
    'binomial_tolerance', 'decide', 'expected_accuracy', 'expected_p_right', 'logistic',
]

MODES = ('2afc', 'gonogo', 'detect', 'free_water', 'idle')
SIDES = ('left', 'right')
CENTER = 'center'
WHEEL = 'wheel'  # a "respond" decision runs on the wheel instead of poking


class ParamsError(ValueError):
    """A parameter value (or combination) the model cannot use; ``parameter`` names the one to fix."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


class Clock(Protocol):
    """What the subject runs on: the same shape as the task runner's clock."""

    def now_ns(self) -> int: ...

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> object: ...

    def cancel(self, handle: object) -> None: ...


def logistic(z: float) -> float:
    """1 / (1 + exp(-z)), without overflow for large |z|."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@dataclass(frozen=True)
class Delay:
    """A shifted lognormal time: ``min_ms + LogNormal(mu, sigma)`` with overall mean ``mean_ms``, sd ``sd_ms``.

    For the lognormal part (mean m = mean_ms - min_ms, sd s): sigma^2 = ln(1 + s^2 / m^2), mu = ln(m) - sigma^2 / 2.
    ``sd_ms == 0`` gives the constant ``mean_ms``.
    """

    mean_ms: float
    sd_ms: float
    min_ms: float = 0.0

    def check(self, name: str) -> None:
        """Raise ParamsError unless these numbers are a distribution (parameters ``<name>_mean_ms`` etc.)."""
        values = {f'{name}_mean_ms': self.mean_ms, f'{name}_sd_ms': self.sd_ms, f'{name}_min_ms': self.min_ms}
        for key, value in values.items():
            if not math.isfinite(value) or value < 0:
                raise ParamsError(key, f'{key} must be a finite number >= 0 (got {value!r})')
        if self.sd_ms > 0 and self.mean_ms <= self.min_ms:
            raise ParamsError(f'{name}_mean_ms', f'{name}_mean_ms ({self.mean_ms:g}) must be greater than '
                              f'{name}_min_ms ({self.min_ms:g}) when {name}_sd_ms > 0')
        if self.mean_ms < self.min_ms:
            raise ParamsError(f'{name}_mean_ms', f'{name}_mean_ms ({self.mean_ms:g}) must not be below '
                              f'{name}_min_ms ({self.min_ms:g})')

    def lognormal(self) -> tuple[float, float]:
        """(mu, sigma) of the lognormal part, in log-milliseconds."""
        m = self.mean_ms - self.min_ms
        sigma2 = math.log1p((self.sd_ms / m) ** 2)
        return math.log(m) - sigma2 / 2, math.sqrt(sigma2)

    def sample_ms(self, rng: random.Random) -> float:
        if self.sd_ms == 0:
            return self.mean_ms
        mu, sigma = self.lognormal()
        return self.min_ms + rng.lognormvariate(mu, sigma)


@dataclass(frozen=True)
class SubjectParams:
    """The model's parameters (see the module docstring for the formulas). Checked on creation."""

    bias: float = 0.0                     # x at which p(right) = 0.5
    slope: float = 5.0                    # 1/x units
    lapse: float = 0.05                   # probability of a random guess
    miss_rate: float = 0.0                # probability of no response to a stimulus
    rt_mean_ms: float = 450.0
    rt_sd_ms: float = 150.0
    rt_min_ms: float = 150.0              # non-decision time: no response is faster
    center_delay_mean_ms: float = 1000.0
    center_delay_sd_ms: float = 500.0
    stimulus_wait_ms: float = 3000.0      # center poke with no stimulus this long: the trial is over
    miss_timeout_ms: float = 5000.0       # a miss sits out this long (>= the task's response window)
    free_water_interval_mean_ms: float = 2000.0
    free_water_interval_sd_ms: float = 1000.0
    free_water_stay: float = 0.7          # probability of going back to the last rewarded port

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ParamsError(f.name, f'{f.name} must be a finite number (got {value!r})')
        for name in ('lapse', 'miss_rate', 'free_water_stay'):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ParamsError(name, f'{name} is a probability, in [0, 1] (got {getattr(self, name)!r})')
        if self.slope < 0:
            raise ParamsError('slope', f'slope must be >= 0 (got {self.slope!r}); a negative slope would swap '
                              'the sides')
        for name in ('stimulus_wait_ms', 'miss_timeout_ms'):
            if getattr(self, name) < 0:
                raise ParamsError(name, f'{name} must be >= 0 (got {getattr(self, name)!r})')
        self.rt.check('rt')
        self.center_delay.check('center_delay')
        self.free_water_interval.check('free_water_interval')

    @property
    def rt(self) -> Delay:
        return Delay(self.rt_mean_ms, self.rt_sd_ms, self.rt_min_ms)

    @property
    def center_delay(self) -> Delay:
        return Delay(self.center_delay_mean_ms, self.center_delay_sd_ms)

    @property
    def free_water_interval(self) -> Delay:
        return Delay(self.free_water_interval_mean_ms, self.free_water_interval_sd_ms)

    def with_(self, **changes: float) -> SubjectParams:
        """A copy with ``changes`` (checked)."""
        return replace(self, **changes)


def expected_p_right(x: float, params: SubjectParams) -> float:
    """p(right | x, a response): lapse/2 + (1 - lapse) * logistic(slope * (x - bias))."""
    return params.lapse / 2 + (1 - params.lapse) * logistic(params.slope * (x - params.bias))


def expected_accuracy(x: float, params: SubjectParams) -> float:
    """p(correct | x, a response): p(right) for x > 0, p(left) for x < 0.

    For x == 0 no side is correct; a task that rewards a random side then scores 0.5 whatever the
    subject does, so 0.5 is returned.
    """
    if x > 0:
        return expected_p_right(x, params)
    if x < 0:
        return 1.0 - expected_p_right(x, params)
    return 0.5


def binomial_tolerance(p: float, n: int, z: float = 4.0) -> float:
    """Half-width ``z * sqrt(p (1 - p) / n)`` for a measured proportion of n trials around p.

    The normal approximation; with n * p(1 - p) below ~10 it understates the spread, so use enough trials.
    """
    if n <= 0:
        raise ValueError(f'n must be > 0 (got {n})')
    return z * math.sqrt(p * (1 - p) / n)


@dataclass(frozen=True)
class Decision:
    side: str | None          # 'left', 'right', or None for a miss
    lapsed: bool              # the side was a random guess


def decide(x: float, params: SubjectParams, rng: random.Random) -> Decision:
    """One choice for stimulus ``x``: always three draws of ``rng`` (miss, lapse, side), in that order."""
    u_miss, u_lapse, u_side = rng.random(), rng.random(), rng.random()
    lapsed = u_lapse < params.lapse
    if u_miss < params.miss_rate:
        return Decision(None, False)
    # Drawing the side with the inner curve after a lapse check gives exactly expected_p_right().
    p = 0.5 if lapsed else logistic(params.slope * (x - params.bias))
    return Decision('right' if u_side < p else 'left', lapsed)


@dataclass
class Response:
    """What the subject did with one stimulus."""

    number: int               # 1-based count of the stimuli the subject decided on
    x: float
    label: str                # e.g. the sound id
    side: str | None          # None: a miss
    lapsed: bool
    rt_ms: float | None       # drawn reaction time (onset -> poke); None for a miss
    onset_ns: int             # stimulus onset on the clock
    poke_ns: int | None = None  # when the poke was sent; None until then and for a miss


@dataclass
class Counts:
    center_pokes: int = 0
    retries: int = 0          # center pokes that got no stimulus within stimulus_wait_ms
    responses: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIDES, 0))
    misses: int = 0
    withheld: int = 0         # gonogo / detect: stimuli decided "do not respond"
    lapses: int = 0
    ignored: int = 0          # stimuli that came while a response was pending
    free_water_pokes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIDES, 0))
    rewards: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIDES, 0))

    def summary(self) -> str:
        def sides(d: dict[str, int]) -> str:
            return f'{sum(d.values())} (left {d["left"]}, right {d["right"]})'
        return (f'responses {sides(self.responses)}, misses {self.misses}, withheld {self.withheld}, '
                f'lapses {self.lapses}, '
                f'center pokes {self.center_pokes} ({self.retries} without a stimulus), ignored stimuli '
                f'{self.ignored}, free-water pokes {sides(self.free_water_pokes)}, rewards {sides(self.rewards)}')


class VirtualSubject:
    """The animal as a state machine on a :class:`Clock`; pokes go out through ``poke(port)``.

    ``port`` is ``'center'``, ``'left'`` or ``'right'``. Inputs: :meth:`on_stimulus` (a stimulus onset with
    its signed value) and :meth:`on_reward` (a valve opened). ``on_response`` is called with each
    :class:`Response` when its poke is sent (a miss: when it is decided).

    States: ``stopped``, ``center_delay`` (waiting to poke the center), ``waiting`` (poked, waiting for a
    stimulus), ``responding`` (a side poke is due), ``missed`` (sitting out a miss), ``free_water``, ``idle``.
    """

    def __init__(self, params: SubjectParams, clock: Clock, poke: Callable[[str], None], *, seed: int = 0,
                 mode: str = '2afc', on_response: Callable[[Response], None] | None = None,
                 response_port: str = 'right') -> None:
        if mode not in MODES:
            raise ValueError(f'mode {mode!r} is not one of {", ".join(MODES)}')
        if response_port not in (CENTER, *SIDES, WHEEL):
            raise ValueError(f'response_port {response_port!r} is not one of center, left, right, wheel')
        self.response_port = response_port  # gonogo and detect: where a "respond" decision pokes
        self.params = params
        self.clock = clock
        self._poke = poke
        self.mode = mode
        self.on_response = on_response
        self.choice_rng = random.Random(seed)
        self.timing_rng = random.Random(f'{seed}/timing')
        self.state = 'stopped'
        self.counts = Counts()
        self.history: list[Response] = []
        self.last_rewarded: str | None = None
        self._timer: object | None = None
        self._pending: Response | None = None

    # -- control -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Begin behaving in the current mode (a no-op when already running)."""
        if self.state != 'stopped':
            return
        if self.mode in ('2afc', 'gonogo'):
            self._center_delay()
        elif self.mode == 'detect':
            self.state = 'listening'
        elif self.mode == 'free_water':
            self._free_water_delay()
        else:
            self.state = 'idle'

    def stop(self) -> None:
        """Cancel whatever is due; a pending response is dropped (not counted)."""
        self._cancel()
        self._pending = None
        self.state = 'stopped'

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f'mode {mode!r} is not one of {", ".join(MODES)}')
        running = self.state != 'stopped'
        self.stop()
        self.mode = mode
        if running:
            self.start()

    def set_params(self, params: SubjectParams) -> None:
        """New parameters, used from the next draw on (a delay already running keeps its time)."""
        self.params = params

    # -- inputs ------------------------------------------------------------------------------------
    def on_stimulus(self, x: float, onset_ns: int | None = None, label: str = '') -> Response | None:
        """A stimulus with signed value ``x`` started at ``onset_ns`` (clock time; None: now).

        Returns the decision (the side poke follows after the reaction time), or None when the subject
        is not doing 2AFC or is still committed to a previous response.
        """
        if self.mode not in ('2afc', 'gonogo', 'detect') or self.state in ('stopped', 'idle'):
            return None
        if self.state == 'responding':
            self.counts.ignored += 1
            return None
        now = self.clock.now_ns()
        onset = now if onset_ns is None else onset_ns
        self._cancel()
        decision = decide(x, self.params, self.choice_rng)
        response = Response(number=len(self.history) + 1, x=x, label=label, side=decision.side,
                            lapsed=decision.lapsed, rt_ms=None, onset_ns=onset)
        self.history.append(response)
        withheld = self.mode in ('gonogo', 'detect') and decision.side == 'left'
        if decision.side is None or withheld:
            if withheld:
                self.counts.withheld += 1
            else:
                self.counts.misses += 1
            self.state = 'missed'
            self._later(self.params.miss_timeout_ms, self._next)
            if self.on_response:
                self.on_response(response)
            return response
        response.rt_ms = self.params.rt.sample_ms(self.timing_rng)
        self.state = 'responding'
        self._pending = response
        # The reaction time counts from the onset, so the time the onset took to reach us is already spent.
        elapsed_ms = (now - onset) / 1e6
        self._later(max(0.0, response.rt_ms - elapsed_ms), self._respond)
        return response

    def on_reward(self, side: str) -> None:
        """A valve at ``side`` opened: counted, and remembered for free water's port preference."""
        if side not in SIDES:
            raise ValueError(f'side {side!r} is not one of {", ".join(SIDES)}')
        self.counts.rewards[side] += 1
        self.last_rewarded = side

    # -- behaviour ---------------------------------------------------------------------------------
    def _next(self) -> None:
        """After a response (or a miss sat out): the next center poke, or listening again in ``detect``."""
        if self.mode == 'detect':
            self.state = 'listening'
        else:
            self._center_delay()

    def _center_delay(self) -> None:
        self.state = 'center_delay'
        self._later(self.params.center_delay.sample_ms(self.timing_rng), self._poke_center)

    def _poke_center(self) -> None:
        self.counts.center_pokes += 1
        self.state = 'waiting'
        self._poke(CENTER)
        self._later(self.params.stimulus_wait_ms, self._no_stimulus)

    def _no_stimulus(self) -> None:
        self.counts.retries += 1
        self._center_delay()

    def _respond(self) -> None:
        response, self._pending = self._pending, None
        if response is None or response.side is None:
            return
        response.poke_ns = self.clock.now_ns()
        self.counts.responses[response.side] += 1
        self.counts.lapses += response.lapsed
        self._poke(response.side if self.mode == '2afc' else self.response_port)
        self._next()
        if self.on_response:
            self.on_response(response)

    def _free_water_delay(self) -> None:
        self.state = 'free_water'
        self._later(self.params.free_water_interval.sample_ms(self.timing_rng), self._free_water_poke)

    def _free_water_poke(self) -> None:
        # Two draws per poke, whether or not a port was rewarded yet.
        u_stay, u_side = self.choice_rng.random(), self.choice_rng.random()
        if self.last_rewarded is not None and u_stay < self.params.free_water_stay:
            side = self.last_rewarded
        else:
            side = 'right' if u_side < 0.5 else 'left'
        self.counts.free_water_pokes[side] += 1
        self._poke(side)
        self._free_water_delay()

    # -- timer -------------------------------------------------------------------------------------
    def _later(self, delay_ms: float, fn: Callable[[], None]) -> None:
        self._cancel()

        def fire() -> None:
            self._timer = None
            fn()

        self._timer = self.clock.call_later(delay_ms / 1000.0, fire)

    def _cancel(self) -> None:
        if self._timer is not None:
            self.clock.cancel(self._timer)
            self._timer = None
