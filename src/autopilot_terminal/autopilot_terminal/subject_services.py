"""What the terminal's subject services do: create a subject, update its biography, assign a protocol, set its
step and parameter overrides, record weights and notes, put it on a rig (the roster), each a change in the
subject's file made on the recorder's writer thread; and what they tell: a subject's summary, history, sessions
and weights (:mod:`.catalog`, read on that thread too), the protocols of protocol_dir (list, text, save).

``run(fn)`` awaits ``fn(recorder)`` run on that thread (TimeoutError when it does not answer). Malformed
requests raise InputError (the guard answers them); refusals of well-formed ones are answered with
``success = False`` and the reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from autopilot_msgs.msg import (
    HistoryEntry,
    ProtocolSummary,
    SessionSummary,
    SubjectList,
    SubjectSummary,
    TrialData,
    WeightEntry,
)
from autopilot_msgs.srv import (
    AddNote,
    AssignProtocol,
    CreateSubject,
    GetProtocol,
    GetSubject,
    GetTrials,
    ListProtocols,
    RecordWeight,
    SaveProtocol,
    SetSubjectParameters,
    SetSubjectPilot,
    SetSubjectStep,
)
from rcl_interfaces.msg import Parameter as ParameterMsg
from rclpy.parameter import parameter_value_to_python

from autopilot_core import trial_fields
from autopilot_core.checks import MAX_TEXT, InputError, finite, sequence, text
from autopilot_core.stamps import to_msg

from . import catalog
from .catalog import Catalog, ProtocolInfo, SubjectInfo
from .provenance_collect import plain
from .recorder import Recorder, subject_error
from .storage import MAX_NOTE, WEIGHT_RANGE_G, WEIGHT_WHEN, StoreError, history_rows
from .subjects import (
    MAX_PATH,
    MAX_PROTOCOL_BYTES,
    SubjectState,
    check_biography_size,
    check_protocol,
    check_step,
    parse_biography,
    read_protocol,
    state_from_history,
)

T = TypeVar('T')
Run = Callable[[Callable[[Recorder], T]], Awaitable[T]]
Background = Callable[[Callable[[], T]], Awaitable[T]]
#: Bounds of requests: characters of a reason and of a parameter's name and string value, parameter overrides per
#: request and characters of their JSON (stored in the subject's history).
MAX_REASON = 1024
MAX_NAME = 64
MAX_PARAMETERS = 256
MAX_OVERRIDES_JSON = 16384
#: A session id in a request (a UUID is 36 characters; the weights table holds 64 bytes).
MAX_SESSION_ID = 64
#: A protocol's text: at most this many characters (its bytes are bounded again by MAX_PROTOCOL_BYTES).
MAX_PROTOCOL_CHARS = MAX_PROTOCOL_BYTES
#: When the GUI asks for a weight (the terminal's ``weigh_at`` parameter).
WEIGH_AT = ('none', 'start', 'stop', 'both')


def checked_subject(subject: str) -> str:
    """A subject name from a request (it names a file); InputError naming the rule otherwise."""
    if (why := subject_error(subject)) is not None:
        raise InputError(why)
    return subject


def overrides(parameters: Sequence[ParameterMsg]) -> tuple[dict[str, Any], list[str]]:
    """set_subject_parameters' request as (values to set, names to remove); InputError naming what is too large."""
    sequence('parameters', parameters, MAX_PARAMETERS)
    set_: dict[str, Any] = {}
    removed: list[str] = []
    for p in parameters:
        text('parameter name', p.name, MAX_NAME, empty=False)
        value = parameter_value_to_python(p.value)
        if value is None:
            removed.append(p.name)
            continue
        items = value if isinstance(value, (list, tuple)) or hasattr(value, 'tolist') else [value]
        sequence(f'parameter {p.name}', items)
        for v in items:
            if isinstance(v, str):
                text(f'parameter {p.name}', v, MAX_TEXT)
            elif isinstance(v, float):
                finite(f'parameter {p.name}', v)
        set_[p.name] = plain(value)
    if (size := len(json.dumps(set_))) > MAX_OVERRIDES_JSON:
        raise InputError(f'parameters: {size} characters of JSON; at most {MAX_OVERRIDES_JSON} are accepted at once')
    return set_, removed


def session_id_of(value: str) -> str:
    """A session id from a request ('' for none); InputError naming the rule otherwise."""
    text('session_id', value, MAX_SESSION_ID)
    if '/' in value or not value.isprintable() or len(value.encode()) > MAX_SESSION_ID:
        raise InputError(f'session_id {value[:80]!r}: a session id is up to {MAX_SESSION_ID} printable characters '
                         'without "/" (a UUID), or "" for none')
    return value


async def _inline(fn: Callable[[], T]) -> T:
    return fn()


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def session_msg(s: catalog.SessionInfo) -> SessionSummary:
    return SessionSummary(session_id=s.session_id, pilot=s.pilot, task=s.task, protocol=s.protocol,
                          step=min(max(s.step, 0), 65535), step_name=s.step_name, state=s.state,
                          start=to_msg(max(s.started_ns, 0)), end=to_msg(max(s.ended_ns, 0)),
                          trials=min(s.trials, 2 ** 32 - 1), accuracy=_nan(s.accuracy))


def summary_msg(info: SubjectInfo) -> SubjectSummary:
    st, last, w = info.state, info.last, info.weights
    return SubjectSummary(
        subject=info.subject, biography_json=json.dumps(info.biography, sort_keys=True), protocol=st.protocol,
        step=min(max(st.step, 0), 65535), step_name=st.step_name, step_names=list(st.steps), pilot=st.pilot,
        sessions=len(info.sessions), trials=min(info.trials, 2 ** 32 - 1),
        last_session_id=last.session_id if last else '', last_session_state=last.state if last else '',
        last_session_start=to_msg(max(last.started_ns, 0) if last else 0),
        last_session_accuracy=_nan(last.accuracy if last else None),
        last_weight_g=w[-1]['grams'] if w else math.nan, last_weight_time=to_msg(w[-1]['time_ns'] if w else 0),
        baseline_weight_g=w[0]['grams'] if w else math.nan)


def protocol_msg(p: ProtocolInfo) -> ProtocolSummary:
    return ProtocolSummary(name=p.name, file=str(p.path), sha256=p.sha256, step_names=list(p.steps),
                           tasks=list(p.tasks), error=p.error)


class SubjectServices:
    """The subject services' logic; each method fills and returns the service's response.

    ``changed()`` is called after every change a service made (the node republishes the subject list);
    ``pilot_names()`` gives the pilots the terminal knows (set_subject_pilot takes those only);
    ``background(fn)`` awaits ``fn()`` run off the executor (protocol files: parsing 1 MB of YAML takes a while).
    """

    def __init__(self, run: Run[Any], data_dir: Path, protocol_dir: Path, *,
                 changed: Callable[[], None] = lambda: None,
                 pilot_names: Callable[[], list[str]] = list, background: Background[Any] | None = None) -> None:
        self.run = run
        self.data_dir = data_dir
        self.protocol_dir = protocol_dir
        self.changed = changed
        self.pilot_names = pilot_names
        self.background: Background[Any] = background or _inline
        self.catalog = Catalog()

    async def state(self, subject: str) -> SubjectState:
        """The subject's protocol, step and overrides, from its file's history."""
        return await self.run(lambda r: state_from_history(subject, history_rows(r.open_file(subject).file)))

    async def _biography(self, req: CreateSubject.Request, resp: CreateSubject.Response,
                         write: Callable[[Recorder, dict[str, Any]], Any], done: str) -> CreateSubject.Response:
        checked_subject(req.subject)
        bio = parse_biography(req.biography_json)
        try:
            f = await self.run(lambda r: write(r, bio))
            resp.success, resp.path, resp.message = True, str(f.path), done
            self.changed()
        except (ValueError, StoreError, TimeoutError) as exc:
            resp.message = str(exc)
        return resp

    async def create(self, req: CreateSubject.Request, resp: CreateSubject.Response) -> CreateSubject.Response:
        return await self._biography(req, resp, lambda r, bio: r.create_file(req.subject, bio),
                                     f'created subject {req.subject} ({self.data_dir / req.subject}.h5)')

    async def update_biography(self, req: CreateSubject.Request,
                               resp: CreateSubject.Response) -> CreateSubject.Response:
        """Merge keys into a subject's biography (a key set to null is removed); stored with the time in history."""
        def apply(r: Recorder, update: dict[str, Any]) -> Any:
            if not update:
                raise ValueError('biography_json must be a non-empty JSON object, e.g. {"weight_g": 23.5}')
            f = r.open_file(req.subject)
            bio = {k: v for k, v in {**f.biography, **update}.items() if v is not None}
            check_biography_size(bio)
            f.set_biography(bio)
            return f
        return await self._biography(req, resp, apply, f'{req.subject}: biography updated ({req.biography_json})')

    async def assign(self, req: AssignProtocol.Request, resp: AssignProtocol.Response) -> AssignProtocol.Response:
        """Assign a protocol the pilots will accept: checked with their own code (:func:`.subjects.check_protocol`)."""
        checked_subject(req.subject)
        text('protocol', req.protocol, MAX_PATH, empty=False)
        try:
            proto = check_protocol(read_protocol(req.protocol, self.protocol_dir))
            step_name = check_step(proto, req.step)
            detail = {'file': str(proto.path), 'sha256': proto.sha256, 'steps': list(proto.steps), 'by': 'terminal'}
            await self.run(lambda r: r.open_file(req.subject).add_history(
                'assign', protocol=proto.name, step=req.step, step_name=step_name, detail=detail))
            resp.success, resp.n_steps, resp.step_name = True, len(proto.steps), step_name
            self.changed()
            resp.message = f'{req.subject}: protocol {proto.name} ({len(proto.steps)} steps), at step {req.step} ' \
                           f'({step_name})'
        except (ValueError, StoreError, TimeoutError) as exc:  # ProtocolFileError is a ValueError
            resp.message = str(exc)
        return resp

    async def set_step(self, req: SetSubjectStep.Request, resp: SetSubjectStep.Response) -> SetSubjectStep.Response:
        checked_subject(req.subject)
        text('reason', req.reason, MAX_REASON)
        try:
            st = await self.state(req.subject)
            step_name = check_step(st, req.step)
            detail = {'from_step': st.step, 'from_step_name': st.step_name, 'reason': req.reason, 'by': 'terminal'}
            await self.run(lambda r: r.open_file(req.subject).add_history(
                'step', protocol=st.protocol, step=req.step, step_name=step_name, detail=detail))
            resp.success, resp.step_name = True, step_name
            self.changed()
            resp.message = f'{req.subject}: step {st.step} ({st.step_name}) -> {req.step} ({step_name}); applies ' \
                           'from the next session'
        except (ValueError, StoreError, TimeoutError) as exc:
            resp.message = str(exc)
        return resp

    async def set_parameters(self, req: SetSubjectParameters.Request,
                             resp: SetSubjectParameters.Response) -> SetSubjectParameters.Response:
        checked_subject(req.subject)
        set_, removed = overrides(req.parameters)
        try:
            st = await self.state(req.subject)
            if not st.protocol:
                raise ValueError(f'{req.subject} has no protocol: assign one first')
            await self.run(lambda r: r.open_file(req.subject).add_history(
                'parameters', protocol=st.protocol, step=st.step, step_name=st.step_name,
                detail={'set': set_, 'removed': removed, 'by': 'terminal'}))
            resp.success = True
            self.changed()
            resp.message = f'{req.subject}: set {sorted(set_) or "nothing"}, removed {removed or "nothing"}; ' \
                           'checked by the pilot at the next session'
        except (ValueError, StoreError, TimeoutError) as exc:
            resp.message = str(exc)
        return resp

    # -- what the GUI and the CLI read ------------------------------------------------------------

    async def subject_list(self) -> SubjectList:
        """Every subject of data_dir (a file that cannot be read goes in ``problems``)."""
        subjects, problems = await self.run(lambda r: catalog.scan(r, self.catalog))
        return SubjectList(subjects=[summary_msg(i) for i in subjects], problems=problems)

    async def get_subject(self, req: GetSubject.Request, resp: GetSubject.Response) -> GetSubject.Response:
        checked_subject(req.subject)
        try:
            info = await self.run(lambda r: self.catalog.subject(r.open_file(req.subject).file, req.subject))
        except catalog.READ_ERRORS + (TimeoutError,) as exc:
            resp.message = str(exc)
            return resp
        resp.summary = summary_msg(info)
        resp.history = [HistoryEntry(time=to_msg(max(int(h['time_ns']), 0)), kind=h['kind'], protocol=h['protocol'],
                                     step=int(h['step']), step_name=h['step_name'],
                                     detail_json=json.dumps(h['detail'], sort_keys=True)) for h in info.history]
        resp.sessions = [session_msg(s) for s in info.sessions]
        resp.weights = [WeightEntry(time=to_msg(max(int(w['time_ns']), 0)), grams=float(w['grams']), when=w['when'],
                                    session_id=w['session_id']) for w in info.weights]
        resp.success = True
        resp.message = f'{req.subject}: {len(info.sessions)} sessions, {info.trials} trials, {len(info.history)} ' \
                       f'history rows, {len(info.weights)} weights'
        return resp

    async def get_trials(self, req: GetTrials.Request, resp: GetTrials.Response) -> GetTrials.Response:
        checked_subject(req.subject)
        text('session_id', req.session_id, 64)
        try:
            got = await self.run(lambda r: catalog.read_trials(r.open_file(req.subject).file, req.session_id,
                                                               int(req.first_trial), int(req.max_trials)))
        except catalog.READ_ERRORS + (TimeoutError,) as exc:
            resp.message = f'{req.subject}: {exc.args[0] if isinstance(exc, KeyError) and exc.args else exc}'
            return resp
        resp.session_id, resp.more = got.session_id, got.more
        resp.trials = [trial_msg(req.subject, got, row) for row in got.rows]
        resp.success = True
        resp.message = f'{req.subject}: {len(resp.trials)} trials of session {got.session_id}' + \
            (' (more follow)' if got.more else '')
        return resp

    # -- weights, notes, roster -------------------------------------------------------------------

    async def record_weight(self, req: RecordWeight.Request, resp: RecordWeight.Response) -> RecordWeight.Response:
        checked_subject(req.subject)
        lo, hi = WEIGHT_RANGE_G
        grams = finite('grams', req.grams, lo, hi)
        if not lo < grams < hi:
            raise InputError(f'grams must be more than {lo:g} and less than {hi:g} (got {grams:g}); weigh again')
        if req.when not in WEIGHT_WHEN:
            raise InputError(f'when {req.when[:40]!r} is not one of {", ".join(WEIGHT_WHEN)}')
        sid = session_id_of(req.session_id)

        def store(r: Recorder) -> list[dict[str, Any]]:
            f = r.open_file(req.subject)
            f.add_weight(grams, req.when, sid)
            return catalog.weight_rows(f.file)
        try:
            weights = await self.run(store)
        except (ValueError, StoreError, TimeoutError) as exc:
            resp.message = str(exc)
            return resp
        resp.success = True
        resp.message = f'{req.subject}: {catalog.weight_ratio(weights)} ({req.when}' + \
            (f', session {sid})' if sid else ')')
        self.changed()
        return resp

    async def add_note(self, req: AddNote.Request, resp: AddNote.Response) -> AddNote.Response:
        checked_subject(req.subject)
        text('text', req.text, MAX_NOTE)
        if not req.text.strip():
            raise InputError('text is empty: write the note')
        sid = session_id_of(req.session_id)
        try:
            st = await self.state(req.subject)
            await self.run(lambda r: r.open_file(req.subject).add_note(
                req.text, sid, protocol=st.protocol, step=st.step, step_name=st.step_name))
        except (ValueError, StoreError, TimeoutError) as exc:
            resp.message = str(exc)
            return resp
        resp.success = True
        resp.message = f'{req.subject}: note added ({len(req.text)} characters' + \
            (f', session {sid})' if sid else ')')
        self.changed()
        return resp

    async def set_pilot(self, req: SetSubjectPilot.Request,
                        resp: SetSubjectPilot.Response) -> SetSubjectPilot.Response:
        checked_subject(req.subject)
        text('pilot', req.pilot, MAX_NAME)
        try:
            st = await self.state(req.subject)
            if req.pilot and req.pilot != st.pilot and req.pilot not in (known := self.pilot_names()):
                raise ValueError(f'unknown pilot {req.pilot!r} (known: {", ".join(sorted(known)) or "none"}); start '
                                 'it on this ROS_DOMAIN_ID first, or give "" to take the subject off every rig')
            await self.run(lambda r: r.open_file(req.subject).add_history(
                'roster', protocol=st.protocol, step=st.step, step_name=st.step_name,
                detail={'pilot': req.pilot, 'from_pilot': st.pilot, 'by': 'terminal'}))
        except (ValueError, StoreError, TimeoutError) as exc:
            resp.message = str(exc)
            return resp
        resp.success = True
        resp.message = f'{req.subject}: on rig {req.pilot}' if req.pilot else f'{req.subject}: on no rig'
        resp.message += f' (was {st.pilot or "none"})'
        self.changed()
        return resp

    # -- protocols --------------------------------------------------------------------------------

    async def list_protocols(self, req: ListProtocols.Request,
                             resp: ListProtocols.Response) -> ListProtocols.Response:
        try:
            infos = await self.background(lambda: [catalog.protocol_info(p)
                                                   for p in catalog.protocol_files(self.protocol_dir)])
        except (OSError, TimeoutError) as exc:  # no success field: the list is empty and the log says why
            raise InputError(f'cannot list {self.protocol_dir}: {exc}') from exc
        resp.protocols = [protocol_msg(i) for i in infos]
        return resp

    async def get_protocol(self, req: GetProtocol.Request, resp: GetProtocol.Response) -> GetProtocol.Response:
        text('name', req.name, MAX_NAME * 4)
        try:
            info = await self.background(lambda: catalog.protocol_info(catalog.find_protocol(self.protocol_dir,
                                                                                               req.name)))
        except (ValueError, OSError, TimeoutError) as exc:
            resp.message = str(exc)
            return resp
        resp.protocol = protocol_msg(info)
        if not info.text and not info.sha256:  # not even read
            resp.message = info.error
            return resp
        resp.success, resp.text = True, info.text
        resp.message = f'{info.path}: {len(info.steps)} steps' + (f'; the pilots would refuse it: {info.error}'
                                                                   if info.error else '')
        return resp

    async def save_protocol(self, req: SaveProtocol.Request, resp: SaveProtocol.Response) -> SaveProtocol.Response:
        text('name', req.name, MAX_NAME * 4)
        text('text', req.text, MAX_PROTOCOL_CHARS)
        try:
            path = await self.background(lambda: catalog.save_protocol(self.protocol_dir, req.name, req.text,
                                                                        req.overwrite))
        except (ValueError, OSError, TimeoutError) as exc:
            resp.message = str(exc)
            return resp
        resp.success, resp.path = True, str(path)
        resp.message = f'saved protocol {req.name} ({path})'
        return resp


def _text(value: Any) -> str:
    return value.decode(errors='replace') if isinstance(value, bytes) else str(value)


def trial_msg(subject: str, got: catalog.StoredTrials, row: dict[str, Any]) -> TrialData:
    """A stored trial row as the TrialData the pilot published (the fields typed as the table declares them)."""
    msg = TrialData(pilot=got.attrs['pilot'], subject=subject, session_id=got.session_id,
                    trial_number=int(row['trial_number']), task=got.attrs['task'], protocol=got.attrs['protocol'],
                    step=int(row['step']), step_name=_text(row['step_name']))
    msg.header.stamp = to_msg(max(int(row['stamp_ns']), 0))
    if 'start_ns' in row:
        msg.start = to_msg(max(int(row['start_ns']), 0))
    values = []
    for name, code, unit in got.fields:
        value: Any = row.get(name)
        value = _text(value) if code == trial_fields.STRING else value.item() if hasattr(value, 'item') else value
        values.append(trial_fields.make(name, code, unit, value))
    msg.fields = values
    return msg
