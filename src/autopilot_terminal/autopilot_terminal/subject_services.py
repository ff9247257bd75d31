"""What the terminal's subject services do: create a subject, update its biography, assign a protocol, set its
step and parameter overrides, each a change in the subject's file made on the recorder's writer thread.

``run(fn)`` awaits ``fn(recorder)`` run on that thread (TimeoutError when it does not answer). Malformed
requests raise InputError (the guard answers them); refusals of well-formed ones are answered with
``success = False`` and the reason.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from autopilot_msgs.srv import AssignProtocol, CreateSubject, SetSubjectParameters, SetSubjectStep
from rcl_interfaces.msg import Parameter as ParameterMsg
from rclpy.parameter import parameter_value_to_python

from autopilot_core.checks import MAX_TEXT, InputError, finite, sequence, text

from .provenance_collect import plain
from .recorder import Recorder, subject_error
from .storage import StoreError, history_rows
from .subjects import (
    MAX_PATH,
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
#: Bounds of requests: characters of a reason and of a parameter's name and string value, parameter overrides per
#: request and characters of their JSON (stored in the subject's history).
MAX_REASON = 1024
MAX_NAME = 64
MAX_PARAMETERS = 256
MAX_OVERRIDES_JSON = 16384


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


class SubjectServices:
    """The subject services' logic; each method fills and returns the service's response."""

    def __init__(self, run: Run[Any], data_dir: Path, protocol_dir: Path) -> None:
        self.run = run
        self.data_dir = data_dir
        self.protocol_dir = protocol_dir

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
            resp.message = f'{req.subject}: set {sorted(set_) or "nothing"}, removed {removed or "nothing"}; ' \
                           'checked by the pilot at the next session'
        except (ValueError, StoreError, TimeoutError) as exc:
            resp.message = str(exc)
        return resp
