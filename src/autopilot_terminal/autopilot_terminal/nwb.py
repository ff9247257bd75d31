"""Export a subject file's sessions to NWB (Neurodata Without Borders 2.x, with pynwb): one NWB file per session.

One ``NWBFile`` per session is what NWB users and DANDI expect (an NWB file is one recording session of one
subject), so :func:`export_nwb` writes ``out/sub-<subject>_ses-<start>-<session id>_behavior.nwb`` per
session into the directory ``out``; ``out`` may instead be a file path ending in ``.nwb`` when exactly one
session is exported (``session=`` given, or the subject file has one session).

The mapping (NWB core 2.11, no extensions needed):

* ``identifier`` and ``session_id``: the session id (a UUID4, as NWB recommends for identifiers);
  ``session_start_time``: the session's ``started_ns`` as a UTC datetime (also the timestamps reference).
  Every time in the file is in seconds relative to it.
* ``subject``: ``subject_id`` and, from the biography where present, species (common names such as
  "mouse" mapped to the binomial NWB asks for, other text passed on as written), sex (M/F/U/O from the
  usual spellings; anything else left out), ``date_of_birth`` (``dob`` or ``date_of_birth``, ISO 8601;
  naive dates taken as UTC), ``age`` (ISO 8601 duration: the biography's ``age`` if it is one, else days
  from birth to the session start), genotype, strain, weight (text). Nothing is guessed: what does not map
  is left out of those fields, and the whole biography is in ``subject.description`` as JSON.
* ``trials`` (TimeIntervals): one row per trial, in trial-number order. ``stop_time = (stamp_ns -
  started_ns) / 1e9`` (the trial message's stamp, the pilot's clock when the trial ended) and ``start_time =
  (start_ns - started_ns) / 1e9`` (its ``start``, on the same clock). Trials recorded before the message had
  a start (``start_ns`` 0 or no such column) get a derived one: the previous trial's ``stop_time`` (0, the
  session start, for the first), as the task runner starts each trial when the previous one ends. A start
  after its own stop (a clock step) is clamped to the stop. Columns: ``trial_number``, ``step``, ``step_name`` and every task field
  in the task's order, with its type and unit in the column description (strings decoded).
* ``epochs`` (TimeIntervals): the protocol step periods within the session (step, step_name, protocol;
  the step name also as a tag), split at each step change.
* ``events`` (EventsTable, core since NWB 2.10, replacing the deprecated BehavioralEvents): ``gpio``
  (one row per digital edge: device, pin, level after the edge, tick_us; timestamps are the edge's ROS time
  mapped from the hardware tick, resolution 1 us), ``sound`` (one row per sound onset: duration,
  sound_id, play_id, ok, latency_ms, onset_source) and ``protocol_step_changes`` (seq, after_trial, from/to
  step and name, protocol, reason). Empty tables are left out.
* ``acquisition``: one ``ImageSeries`` per recorded video (camera topic), ``format='external'``: the MP4
  stays where the terminal wrote it and ``external_file`` is its path relative to the NWB file (NWB's
  recommendation; keep the folders together when moving them); ``timestamps`` are every encoded frame's
  capture stamp, ``starting_frame`` 0, ``dimension`` [width, height].
* ``acquisition``: one ``TimeSeries`` per stream table (``stream_topics``): ``data`` is n x k float64, the
  stream's numeric and boolean columns in table order (named in ``description``; strings and time fields
  other than the timestamps are left out, they stay in the subject file); ``timestamps`` are the messages'
  ``header.stamp`` when the type has one, else the terminal's receive times.
* Provenance: the session's provenance (package versions, git, launch file, node parameters, hardware,
  calibrations, hosts, ROS) as JSON text in ``data_collection`` (NWB: "notes about data collection");
  ``source_script`` names this exporter and its version; ``notes`` say where the file came from.

Receive times (the Terminal's clock) are not exported: they are the recorder's bookkeeping, and the
subject file keeps them. A session still running is exported as far as it is recorded (``notes`` say so).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from hdmf.common import VectorData
from pynwb import NWBHDF5IO, NWBFile
from pynwb.base import TimeSeries
from pynwb.epoch import TimeIntervals
from pynwb.event import DurationVectorData, EventsTable, TimestampVectorData
from pynwb.file import Subject
from pynwb.image import ImageSeries

from .storage import FIELD_TYPES, Field, SubjectReader

__all__ = ['ExportError', 'ExportedSession', 'OutputExists', 'export_nwb', 'nwb_file_name', 'session_nwbfile', 'trial_times']

#: Common names -> the binomial NWB asks for in ``Subject.species``.
SPECIES = {
    'mouse': 'Mus musculus', 'mice': 'Mus musculus', 'house mouse': 'Mus musculus',
    'rat': 'Rattus norvegicus', 'norway rat': 'Rattus norvegicus', 'brown rat': 'Rattus norvegicus',
    'gerbil': 'Meriones unguiculatus', 'mongolian gerbil': 'Meriones unguiculatus',
    'ferret': 'Mustela putorius furo', 'marmoset': 'Callithrix jacchus', 'rhesus macaque': 'Macaca mulatta',
    'rhesus monkey': 'Macaca mulatta', 'zebra finch': 'Taeniopygia guttata', 'zebrafish': 'Danio rerio',
    'fruit fly': 'Drosophila melanogaster', 'drosophila': 'Drosophila melanogaster', 'human': 'Homo sapiens',
}
_SEX = {'m': 'M', 'male': 'M', 'f': 'F', 'female': 'F', 'u': 'U', 'unknown': 'U', 'o': 'O', 'other': 'O'}
#: Descriptions of trial columns with a conventional meaning (the store keeps a field's name, type and unit only).
KNOWN_FIELDS = {
    'target': 'the correct side of the trial',
    'response': 'the side the subject chose (e.g. left, right, or none without a response)',
    'correct': "the response matched the target (the task's score)",
    'correction': 'a correction trial (the target repeated after an error); usually left out of accuracy and bias',
}
#: Trial-table names NWB reserves; a task field of such a name is exported as ``task_<name>``.
_RESERVED = {'id', 'start_time', 'stop_time', 'tags', 'tags_index', 'timeseries', 'timeseries_index'}
#: SoundOnset.SOURCE_* -> text.
_ONSET_SOURCES = {0: 'dac', 1: 'callback', 2: 'null'}
_LABEL = re.compile(r'[^A-Za-z0-9-]+')


class ExportError(ValueError):
    """The export cannot be done as asked (no such session, output exists, ...); the message says the fix."""


class OutputExists(ExportError):
    """NWB files the export would write exist already (``paths``); ``how`` says how to replace them."""

    def __init__(self, paths: Sequence[Path], how: str) -> None:
        self.paths = list(paths)
        more = f' (and {len(self.paths) - 1} more)' if len(self.paths) > 1 else ''
        super().__init__(f'{self.paths[0]}: exists{more}; pass {how} to replace')


@dataclass(frozen=True)
class ExportedSession:
    """What :func:`export_nwb` wrote for one session."""

    session_id: str
    path: Path
    trials: int
    gpio_events: int
    sound_events: int
    step_changes: int


def export_nwb(path: Path | str, out: Path | str, session: str | None = None, *,
               overwrite: bool = False) -> list[ExportedSession]:
    """Write the sessions of subject file ``path`` (or only ``session``) as NWB files; see the module doc.

    ``out``: a directory (created if needed) receiving one file per session named by :func:`nwb_file_name`,
    or a ``.nwb`` file path when exactly one session is exported. Existing NWB files are not replaced
    unless ``overwrite``; every target is checked before anything is written, and each file is written
    under a temporary name and renamed into place, so a failed export leaves no half-written file.
    Raises :class:`ExportError` (bad request) or :class:`~.storage.StoreError` (unreadable subject file).
    """
    path, out = Path(path), Path(out)
    with SubjectReader(path) as reader:
        subject = reader.subject
        sessions = reader.sessions()
        if session is not None:
            if session not in sessions:
                known = ', '.join(sessions) if sessions else 'none'
                raise ExportError(f'{path}: no session {session!r}; sessions of {subject}: {known}')
            sessions = [session]
        if not sessions:
            raise ExportError(f'{path}: subject {subject} has no sessions; nothing to export')
        starts = {sid: int(reader.session(sid).get('started_ns', 0)) for sid in sessions}
        targets = _targets(subject, starts, out)
        existing = [p for p in targets.values() if p.exists()]
        if existing and not overwrite:
            raise OutputExists(existing, 'overwrite=True')
        written = []
        for sid, target in targets.items():
            nwbfile = session_nwbfile(reader, sid, nwb_dir=target.parent)
            _write(nwbfile, target)
            events = nwbfile.events or {}
            written.append(ExportedSession(
                sid, target, len(nwbfile.trials) if nwbfile.trials is not None else 0,
                *(len(events[name]) if name in events else 0 for name in ('gpio', 'sound', 'protocol_step_changes'))))
        return written


def nwb_file_name(subject: str, session_id: str, started_ns: int) -> str:
    """``sub-<subject>_ses-<UTC start YYYYMMDDTHHMMSS>-<session id>_behavior.nwb`` (DANDI-style; labels keep
    letters, digits and '-', so other characters become '-'). The start makes a listing sort by time."""
    start = _utc(started_ns).strftime('%Y%m%dT%H%M%S')
    return f'sub-{_label(subject)}_ses-{start}-{_label(session_id)}_behavior.nwb'


def trial_times(stamp_ns: np.ndarray, started_ns: int,
                start_ns: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(start_time, stop_time) in seconds from the session start, for trials in trial-number order.

    stop = (stamp_ns - started_ns) / 1e9 (a trial's stamp is its end); start = (start_ns - started_ns) / 1e9
    where the trial's start is known (> 0), else the previous stop, 0 for the first (the runner begins each
    trial when the previous one ends); clamped so that start <= stop.
    """
    stop = (np.asarray(stamp_ns, dtype=np.int64) - np.int64(started_ns)) / 1e9
    start = np.concatenate(([0.0], stop[:-1])) if stop.size else stop.copy()
    if start_ns is not None:
        known = np.asarray(start_ns, dtype=np.int64)
        start = np.where(known > 0, (known - np.int64(started_ns)) / 1e9, start)
    return np.minimum(start, stop), stop


def session_nwbfile(reader: SubjectReader, session_id: str, *, nwb_dir: Path | None = None) -> NWBFile:
    """The NWBFile of one session (in memory; write it with ``pynwb.NWBHDF5IO``); ``nwb_dir``: the directory it
    will be written to, which video paths are made relative to (default: the subject file's)."""
    subject = reader.subject
    attrs = reader.session(session_id)
    started_ns = int(attrs.get('started_ns', 0))
    task, protocol = str(attrs.get('task', '')), str(attrs.get('protocol', ''))
    step, step_name, state = int(attrs.get('step', 0)), str(attrs.get('step_name', '')), str(attrs.get('state', ''))
    provenance = reader.provenance(session_id)

    where = f'pilot {attrs["pilot"]}' if attrs.get('pilot') else 'an unnamed pilot'
    description = f'{task or "unnamed task"} session of subject {subject} on {where}'
    if protocol:
        description += f', protocol {protocol} step {step} ({step_name or "unnamed"})'
    notes = (f'Exported from the autopilot-ros subject file {reader.path.name} (session state: {state}). '
             'Trial times are the pilot\'s start and end stamps of each trial (see the trials table description).')
    if state == 'running':
        notes += ' The session was still running when exported: later trials are missing.'
    nwbfile = NWBFile(
        session_description=description,
        identifier=session_id,
        session_id=session_id,
        session_start_time=_utc(started_ns),
        experiment_description=f'autopilot-ros task {task}' + (f', protocol {protocol}' if protocol else ''),
        keywords=[k for k in ('autopilot', task, protocol) if k],
        subject=nwb_subject(subject, reader.biography, _utc(started_ns)),
        data_collection=('autopilot-ros session provenance (JSON): '
                         + json.dumps(provenance, sort_keys=True, ensure_ascii=False)) if provenance else None,
        source_script=f'autopilot_terminal.nwb.export_nwb (autopilot_terminal {_version("autopilot_terminal")}, '
                      f'pynwb {_version("pynwb")})',
        source_script_file_name=Path(__file__).name,
        notes=notes,
    )

    trials = reader.trials(session_id)
    fields = reader.trial_fields(session_id) or []
    last_stop = 0.0
    if trials and trials['trial_number'].size:
        order = np.argsort(trials['trial_number'], kind='stable')
        trials = {name: col[order] for name, col in trials.items()}
        start, stop = trial_times(trials['stamp_ns'], started_ns, trials.get('start_ns'))
        last_stop = float(stop.max())
        nwbfile.trials = _trials_table(trials, fields, start, stop)

    steps = reader.steps(session_id)
    gpio = reader.events(session_id, 'gpio')
    sound = reader.events(session_id, 'sound')
    end = max(last_stop, (int(attrs.get('ended_ns', 0)) - started_ns) / 1e9 if attrs.get('ended_ns') else 0.0)
    _add_epochs(nwbfile, steps, started_ns, (step, step_name, protocol), end)
    for table in (_gpio_table(gpio, started_ns), _sound_table(sound, started_ns),
                  _steps_table(steps, started_ns)):
        if table is not None:
            nwbfile.add_events_table(table)
    for name, info in reader.streams(session_id).items():
        series = _stream_series(name, info, reader.stream(session_id, name), started_ns)
        if series is not None:
            nwbfile.add_acquisition(series)
    for video in reader.videos(session_id):
        frames = reader.video_frames(session_id, video.name)
        rel = os.path.relpath(video.path, (nwb_dir or reader.path.parent).resolve())
        nwbfile.add_acquisition(ImageSeries(
            name=video.name, description=f'camera frames of {video.topic} ({video.encoding}, {video.codec} MP4); '
            'timestamps: each frame\'s capture stamp', external_file=[rel], format='external', starting_frame=[0],
            timestamps=_seconds(frames['stamp_ns'], started_ns), dimension=[video.width, video.height], unit='n.a.'))
    return nwbfile


def nwb_subject(subject: str, biography: Mapping[str, Any], session_start: dt.datetime) -> Subject:
    """NWB Subject from the biography's free keys; see the module doc for what maps and what is left out."""
    bio = {str(k).lower(): v for k, v in biography.items()}
    kwargs: dict[str, Any] = {'subject_id': subject}
    species = _text(bio.get('species'))
    if species:
        kwargs['species'] = SPECIES.get(species.lower(), species)
    sex = _text(bio.get('sex'))
    if sex and sex.lower() in _SEX:
        kwargs['sex'] = _SEX[sex.lower()]
    dob = _date(bio.get('date_of_birth', bio.get('dob')))
    if dob is not None:
        kwargs['date_of_birth'] = dob
    age = _text(bio.get('age'))
    if age and re.fullmatch(r'P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?', age):
        kwargs['age'] = age
    elif dob is not None and session_start >= dob:
        kwargs['age'] = f'P{(session_start - dob).days}D'
    for key in ('genotype', 'strain', 'weight'):
        value = _text(bio.get(key))
        if value:
            kwargs[key] = value
    if biography:
        kwargs['description'] = 'Biography from the subject file (JSON): ' + json.dumps(
            dict(biography), sort_keys=True, ensure_ascii=False, default=str)
    return Subject(**kwargs)


# --- tables ------------------------------------------------------------------------------------

def _trials_table(trials: Mapping[str, np.ndarray], fields: Sequence[Field], start: np.ndarray,
                  stop: np.ndarray) -> TimeIntervals:
    cols = [
        VectorData(name='start_time', description='Trial start, s from the session start: the trial\'s start '
                   'stamp (pilot clock) minus the session start; for trials recorded without one, the previous '
                   'trial\'s stop_time (0 for the first), as the task runner starts each trial when the previous '
                   'one ends', data=start),
        VectorData(name='stop_time', description='Trial end, s from the session start: the trial\'s stamp '
                   '(pilot clock when it ended) minus the session start', data=stop),
        VectorData(name='trial_number', description='1-based trial number within the session',
                   data=trials['trial_number'].astype(np.int64)),
        VectorData(name='step', description='0-based protocol step the trial ran in',
                   data=trials['step'].astype(np.int64)),
        VectorData(name='step_name', description='name of that protocol step', data=_strings(trials['step_name'])),
    ]
    for name, kind, unit in fields:
        if name not in trials:
            continue
        values = trials[name]
        data: Any = _strings(values) if FIELD_TYPES[kind] == 'string' else values
        what = KNOWN_FIELDS.get(name, 'task trial field')
        nwb_name = f'task_{name}' if name in _RESERVED else name
        renamed = f' (task field {name!r}, renamed: NWB reserves the name)' if nwb_name != name else ''
        cols.append(VectorData(name=nwb_name, data=data, description=(
            f'{what}{renamed}; type {FIELD_TYPES[kind]}, unit {unit or "none"}'
            + ('; NaN: not measured in this trial' if FIELD_TYPES[kind] == 'float64' else ''))))
    return TimeIntervals(name='trials', description='One row per trial. start_time and stop_time are the trial\'s '
                         'start and end stamps (pilot clock); a start missing from old recordings is the previous '
                         'trial\'s end (the session start for the first).',
                         columns=cols)


def _add_epochs(nwbfile: NWBFile, steps: Mapping[str, np.ndarray], started_ns: int,
                initial: tuple[int, str, str], end: float) -> None:
    """One epoch per protocol step period: from the session start (or a step change) to the next change/end."""
    order = np.argsort(steps['seq'], kind='stable') if steps else np.array([], dtype=int)
    changes = [((int(steps['stamp_ns'][i]) - started_ns) / 1e9, int(steps['to_step'][i]),
                str(steps['to_step_name'][i]), str(steps['protocol'][i])) for i in order]
    step, name, protocol = initial
    if changes:  # the step before the first change is what that change left (the session attrs say the same)
        i = order[0]
        step, name = int(steps['from_step'][i]), str(steps['from_step_name'][i])
    periods = [(0.0, step, name, protocol)] + changes
    end = max([end] + [t for t, *_ in changes])
    if end <= 0:
        return
    rows = [(t0, (periods[k + 1][0] if k + 1 < len(periods) else end), s, n, p)
            for k, (t0, s, n, p) in enumerate(periods)]
    rows = [r for r in rows if r[1] > r[0]] or rows[-1:]  # a change at the very start leaves an empty period
    epochs = TimeIntervals(name='epochs', description='Protocol step periods of the session, split at each step '
                           'change (tag: the step name)')
    epochs.add_column('step', '0-based protocol step')
    epochs.add_column('step_name', 'protocol step name')
    epochs.add_column('protocol', 'protocol name')
    for t0, t1, s, n, p in rows:
        epochs.add_interval(start_time=t0, stop_time=max(t0, t1), tags=[n] if n else [], step=s, step_name=n,
                            protocol=p)
    nwbfile.epochs = epochs


def _stream_series(name: str, info: Mapping[str, Any], cols: Mapping[str, np.ndarray],
                   started_ns: int) -> TimeSeries | None:
    stamped = 'header.stamp' in cols and bool(np.all(cols['header.stamp'] > 0))
    times = cols['header.stamp'] if stamped else cols['recv_ns']
    time_cols = {'recv_ns', *info.get('time_columns', ())}
    numeric = [c for c, v in cols.items() if c not in time_cols and v.dtype.kind in 'biuf']
    if not numeric or not len(times):
        return None
    data = np.column_stack([cols[c].astype(np.float64) for c in numeric])
    return TimeSeries(name=name, data=data, unit='n.a.', timestamps=_seconds(times, started_ns),
                      description=f'{info.get("topic", "")} ({info.get("type", "")}), one row per message; columns: '
                      + ', '.join(numeric) + ('; timestamps: header.stamp' if stamped else '; timestamps: receive time'))


def _seconds(stamp_ns: np.ndarray, started_ns: int) -> np.ndarray:
    stamp = np.asarray(stamp_ns, dtype=np.int64)
    # A stamp of 0 means "no time" (e.g. a sound that failed to play): NaN, not -started_ns.
    return np.where(stamp > 0, (stamp - np.int64(started_ns)) / 1e9, np.nan)


def _events(name: str, description: str, source: str, cols: Mapping[str, np.ndarray], started_ns: int,
            extra: Iterable[VectorData], resolution: float | None = None) -> EventsTable:
    columns = [TimestampVectorData(name='timestamp', description='s from the session start',
                                   data=_seconds(cols['stamp_ns'], started_ns), resolution=resolution), *extra]
    return EventsTable(name=name, description=description, source_description=source, columns=columns)


def _gpio_table(cols: Mapping[str, np.ndarray], started_ns: int) -> EventsTable | None:
    if not cols or not cols['stamp_ns'].size:
        return None
    cols = _by_time(cols)
    return _events(
        'gpio', 'Digital edges of the rig\'s GPIO devices (inputs such as nose pokes and licks, outputs such as '
        'valves and LEDs), one row per edge. timestamp: the edge\'s ROS time (pilot host clock), mapped from the '
        'hardware tick, minus the session start.', 'autopilot_hardware gpio node (pigpio, lgpio or sim backend)',
        cols, started_ns, [
            VectorData(name='device', description='device name from the rig configuration',
                       data=_strings(cols['device'])),
            VectorData(name='pin', description='BCM GPIO number (or gpiochip line offset)',
                       data=cols['pin'].astype(np.int64)),
            VectorData(name='level', description='level after the edge: true = high', data=cols['level']),
            VectorData(name='tick_us', description='hardware tick, us since the gpio node started (unwrapped); '
                       'differences give jitter-free intervals', data=cols['tick_us']),
        ], resolution=1e-6)


def _sound_table(cols: Mapping[str, np.ndarray], started_ns: int) -> EventsTable | None:
    if not cols or not cols['stamp_ns'].size:
        return None
    cols = _by_time(cols)
    sources = [_ONSET_SOURCES.get(int(s), f'unknown ({int(s)})') for s in cols['source']]
    duration = np.where(cols['ok'], cols['duration_ms'] / 1e3, np.nan)
    return _events(
        'sound', 'Sound onsets, one row per played sound. timestamp: the ROS time the first sample left the DAC '
        '(see onset_source), minus the session start; NaN when the sound failed to play (ok false).',
        'autopilot_hardware sound node', cols, started_ns, [
            DurationVectorData(name='duration', description='sound duration (NaN if it did not play)', data=duration),
            VectorData(name='sound_id', description='id of the sound played', data=_strings(cols['sound_id'])),
            VectorData(name='play_id', description='id of the play command this onset answers',
                       data=cols['play_id']),
            VectorData(name='ok', description='false when the sound could not be played', data=cols['ok']),
            VectorData(name='latency_ms', description='play command receipt to onset, ms', data=cols['latency_ms']),
            VectorData(name='onset_source', description='how the onset time was obtained: dac (audio DAC time, '
                       'best), callback (audio callback time) or null (null backend clock)', data=sources),
        ])


def _steps_table(cols: Mapping[str, np.ndarray], started_ns: int) -> EventsTable | None:
    if not cols or not cols['seq'].size:
        return None
    order = np.argsort(cols['seq'], kind='stable')
    cols = {k: v[order] for k, v in cols.items()}
    return _events(
        'protocol_step_changes', 'Protocol step changes (graduation) during the session; they take effect '
        'between trials. timestamp: when the pilot made the change, s from the session start.',
        'autopilot_pilot task runner (protocol graduation)', cols, started_ns, [
            VectorData(name='seq', description='1-based number of the change within the session',
                       data=cols['seq'].astype(np.int64)),
            VectorData(name='after_trial', description='trial number after which the change took effect '
                       '(0: at the session start)', data=cols['after_trial'].astype(np.int64)),
            VectorData(name='from_step', description='0-based step before', data=cols['from_step'].astype(np.int64)),
            VectorData(name='to_step', description='0-based step after', data=cols['to_step'].astype(np.int64)),
            VectorData(name='from_step_name', description='step name before', data=_strings(cols['from_step_name'])),
            VectorData(name='to_step_name', description='step name after', data=_strings(cols['to_step_name'])),
            VectorData(name='protocol', description='protocol name', data=_strings(cols['protocol'])),
            VectorData(name='reason', description='why the step changed', data=_strings(cols['reason'])),
        ])


# --- helpers -----------------------------------------------------------------------------------

def _targets(subject: str, starts: Mapping[str, int], out: Path) -> dict[str, Path]:
    if out.suffix.lower() == '.nwb':
        if len(starts) != 1:
            raise ExportError(f'{out}: one .nwb file holds one session and {len(starts)} are to be exported; '
                              'give a directory instead, or pick one session (--session ID)')
        if out.is_dir():
            raise ExportError(f'{out}: is a directory; give a file path or a directory without the .nwb suffix')
        return {sid: out for sid in starts}
    if out.exists() and not out.is_dir():
        raise ExportError(f'{out}: exists and is not a directory; give a directory for the NWB files, or a path '
                          'ending in .nwb for one session')
    targets = {sid: out / nwb_file_name(subject, sid, started) for sid, started in starts.items()}
    if len(set(targets.values())) != len(targets):
        raise ExportError(f'{out}: session ids that differ only in characters other than letters, digits and "-" '
                          'would share a file name; export them one at a time (--session ID -o FILE.nwb)')
    return targets


def _write(nwbfile: NWBFile, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f'.{target.stem}.{os.getpid()}.tmp.nwb')  # pynwb warns about other suffixes
    try:
        with NWBHDF5IO(tmp, 'w') as io:
            io.write(nwbfile)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _by_time(cols: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.argsort(cols['stamp_ns'], kind='stable')
    return {k: v[order] for k, v in cols.items()}


def _strings(values: np.ndarray) -> list[str]:
    return [str(v) for v in values.tolist()]


def _utc(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc)


def _label(text: str) -> str:
    return _LABEL.sub('-', text).strip('-') or 'x'


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _date(value: Any) -> dt.datetime | None:
    """An ISO 8601 date or datetime as an aware datetime (naive: UTC); None if absent or unparseable."""
    text = _text(value)
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return 'unknown'
