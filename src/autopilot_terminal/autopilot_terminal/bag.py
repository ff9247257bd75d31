"""The bag of a subject file: ``autopilot bag info``, the pacing of ``bag play``, and the MCAP export.

Each session of a subject file records a *bag* (docs/hdf5-layout.md): per topic its type, interface text,
RIHS01 type hash, QoS (JSON) and the raw CDR bytes of every message with its receive time. This module
reads it through :class:`.reader.SubjectReader` (so it works on a file the Terminal is still writing) and
needs no rclpy; the ROS side of ``play`` (publishers) lives in :mod:`.cli.bag`.

* :func:`info` / :func:`format_info`: what ``ros2 bag info`` prints, per session.
* :func:`export_mcap`: a rosbag2-compatible MCAP file (profile ``ros2``, ``ros2msg`` schemas, ``cdr``
  channels with ``offered_qos_profiles``), the stored CDR bytes copied as they are, for ``ros2 bag`` (with
  rosbag2's MCAP plugin), Foxglove, ``rosbags`` and ``mcap-ros2-support`` (the last two are tested).
* :func:`pace`: yields messages at their recorded rhythm (scaled), for ``play``.

Bad input (unknown session or topic, an output that exists) raises :class:`BagError`; a file that cannot be
read raises the reader's :class:`.storage.StoreError`. Both messages name the problem and the fix.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from . import qos_record
from .qos_record import Qos, offered_qos_profiles
from .storage import BagMessage, StoreError, SubjectReader, TopicInfo

#: What ``bag info`` reports as the storage id (rosbag2 prints its storage plugin's name there).
STORAGE_ID = 'hdf5 (autopilot-ros subject)'
#: rosbag2 metadata version written into exported MCAP files. Version 8 stores QoS policies as integers, as
#: pre-Jazzy readers expect; version 9 (Jazzy) switched to names, which they cannot parse, while Jazzy's
#: MCAP reader decodes QoS by the version the file declares, so it reads version 8 too (from rosbag2's source;
#: rosbag2 is not pip-installable, so not tried here).
ROSBAG2_METADATA_VERSION = 8
#: Separator between the definitions of an MCAP ``ros2msg`` schema (as rosbag2 and ROS 1 write it).
_SCHEMA_SEPARATOR = '=' * 80
_PRIMITIVES = frozenset({'bool', 'byte', 'char', 'float32', 'float64', 'int8', 'uint8', 'int16', 'uint16', 'int32',
                         'uint32', 'int64', 'uint64', 'string', 'wstring', 'time', 'duration'})
COMPRESSIONS = ('zstd', 'lz4', 'none')


class BagError(ValueError):
    """Bad input to a bag command (unknown session or topic, output exists, ...); the message names the fix."""


def topic_qos(text: str, where: str) -> Qos:
    """A recorded topic's QoS (:func:`.qos_record.parse`); BagError naming the topic if it is not one."""
    try:
        return qos_record.parse(text, where)
    except qos_record.QosError as exc:
        raise BagError(str(exc)) from None


# -------------------------------------------------------------------------------------------- types

def _short_type(name: str) -> str:
    """``pkg/Name`` of ``pkg/msg/Name``: the spelling of ``MSG:`` lines in rosbag2's and ROS 1's schemas."""
    parts = name.split('/')
    return f'{parts[0]}/{parts[-1]}' if len(parts) == 3 else name


def _field_type(line: str, package: str) -> str | None:
    """``pkg/msg/Name`` of the message type a definition line declares a field of, or None (a primitive,
    a constant, a comment or a blank line)."""
    quote = None
    for i, ch in enumerate(line):  # cut the comment; a '#' in a quoted default value is not one
        if quote:
            quote = None if ch == quote else quote
        elif ch in '"\'':
            quote = ch
        elif ch == '#':
            line = line[:i]
            break
    tokens = line.split()
    if len(tokens) < 2:
        return None
    base = re.split(r'[\[<]', tokens[0], maxsplit=1)[0]
    if base in _PRIMITIVES:
        return None  # constants are always primitives: they end here too
    parts = base.split('/')
    if len(parts) == 1:
        return 'std_msgs/msg/Header' if base == 'Header' else f'{package}/msg/{base}'
    return f'{parts[0]}/msg/{parts[-1]}'


def mcap_schema(type_name: str, interface_text: str) -> str:
    """The MCAP ``ros2msg`` schema of ``type_name`` from its stored interface text.

    The store keeps the text as ``ros2 interface show`` prints it: each nested type's definition right
    below the field that uses it, one tab deeper. MCAP (and rosbag2, Foxglove) want the flat form: the
    type's own definition, then each type it depends on once, after a line of ``=`` and ``MSG: pkg/Name``.
    A text already in that form is returned unchanged.
    """
    if re.search(r'^={3,}[ \t]*\r?\nMSG: ', interface_text, flags=re.MULTILINE):
        return interface_text
    root: list[str] = []
    definitions: dict[str, list[str]] = {}  # dependency -> its lines, in order of first use
    stack: list[tuple[int, str, list[str]]] = [(0, type_name, root)]  # (depth, type, lines) of open definitions
    pending: str | None = None  # the nested type the previous field line declared
    for raw in interface_text.splitlines():
        if not raw.strip():
            if len(stack) == 1:
                root.append('')
            continue
        tabs = len(raw) - len(raw.lstrip('\t'))
        if pending is not None and tabs == stack[-1][0] + 1:
            # The first line of the nested type's expansion; a repeated type is expanded again: keep the first.
            lines = definitions.setdefault(pending, []) if pending not in definitions else []
            stack.append((tabs, pending, lines))
        elif pending is not None and pending not in definitions:
            definitions[pending] = []  # a type without fields (std_msgs/Empty): nothing was expanded
        pending = None
        while len(stack) > 1 and tabs < stack[-1][0]:
            stack.pop()
        depth, current, lines = stack[-1]
        text = raw[depth:]
        lines.append(text)
        pending = _field_type(text, current.split('/')[0])
    if pending is not None and pending not in definitions:
        definitions[pending] = []
    out = '\n'.join(root).rstrip('\n') + '\n'
    for name, lines in definitions.items():
        out += f'{_SCHEMA_SEPARATOR}\nMSG: {_short_type(name)}\n' + ''.join(f'{line}\n' for line in lines)
    return out


def installed_type_hash(type_name: str) -> str | None:
    """The RIHS01 hash of the installed definition of ``type_name`` (from the package's type description
    JSON in its share directory), or None if it is not installed or says nothing."""
    parts = type_name.split('/')
    if len(parts) != 3:
        return None
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        path = Path(get_package_share_directory(parts[0])) / parts[1] / f'{parts[2]}.json'
        description = json.loads(path.read_text())
    except (PackageNotFoundError, OSError, ValueError):
        return None
    return next((h.get('hash_string') for h in description.get('type_hashes', ())
                 if h.get('type_name') == type_name), None)


# ------------------------------------------------------------------------------------ choosing data

def select_session(reader: SubjectReader, session: str | None) -> str:
    """``session``, checked to exist, or the file's last session (by start time) when None."""
    sessions = reader.sessions()
    if not sessions:
        raise BagError(f'{reader.path}: the subject file has no sessions yet: nothing to play or export')
    if session is None:
        return sessions[-1]
    if session not in sessions:
        listing = ', '.join(sessions[-10:]) + (f' (and {len(sessions) - 10} earlier)' if len(sessions) > 10 else '')
        raise BagError(f"{reader.path}: no session '{session}'; sessions in this file: {listing} "
                       '(`autopilot bag info FILE` lists them)')
    return session


def select_topics(reader: SubjectReader, session: str, topics: Sequence[str] | None) -> list[TopicInfo]:
    """The session's recorded topics, or those of ``topics`` (each must be recorded), in registration order."""
    recorded = reader.topics(session)
    if topics is None:
        return recorded
    names = {t.topic for t in recorded}
    unknown = [t for t in topics if t not in names]
    if unknown:
        listing = ', '.join(sorted(names)) if names else 'none'
        raise BagError(f"{reader.path}: session {session} did not record {', '.join(map(repr, unknown))}; "
                       f'recorded topics: {listing} (give full names, starting with "/")')
    wanted = set(topics)
    return [t for t in recorded if t.topic in wanted]


def parse_remaps(remaps: Iterable[str]) -> dict[str, str]:
    """``['old:=new', ...]`` as ``{old: new}`` (names are checked by whoever creates the publishers)."""
    out: dict[str, str] = {}
    for item in remaps:
        old, sep, new = item.partition(':=')
        if not sep or not old or not new:
            raise BagError(f"invalid remap '{item}': expected old_topic:=new_topic (e.g. /rig1/gpio/events:=/events)")
        out[old] = new
    return out


def pace(messages: Iterable[BagMessage], rate: float = 1.0, *, clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> Iterator[BagMessage]:
    """Yield ``messages`` (in receive order) each when due: the recorded gaps divided by ``rate``.

    Times are kept against the start, not between messages, so time spent publishing or reading does not
    accumulate as drift; a message already late is yielded at once.
    """
    if not rate > 0:
        raise BagError(f'rate must be > 0, got {rate}')
    start = first = None
    for msg in messages:
        if first is None:
            first, start = msg.recv_ns, clock()
        assert start is not None
        delay = start + (msg.recv_ns - first) / 1e9 / rate - clock()
        if delay > 0:
            sleep(delay)
        yield msg


# --------------------------------------------------------------------------------------------- info

def info(path: Path | str, session: str | None = None) -> dict[str, Any]:
    """What ``bag info`` shows: the file, and per session (all, or ``session``) its span and topics."""
    path = Path(path)
    with SubjectReader(path) as reader:
        sessions = [select_session(reader, session)] if session is not None else reader.sessions()
        out: dict[str, Any] = {'path': str(path), 'size': path.stat().st_size, 'storage_id': STORAGE_ID,
                               'subject': reader.subject, 'sessions': []}
        for sid in sessions:
            attrs = reader.session(sid)
            topics = reader.topics(sid)
            counted = [t for t in topics if t.count]
            start = min((t.first_ns for t in counted), default=0)
            end = max((t.last_ns for t in counted), default=0)
            out['sessions'].append({
                'id': sid, 'pilot': attrs.get('pilot', ''), 'task': attrs.get('task', ''),
                'protocol': attrs.get('protocol', ''), 'state': attrs.get('state', ''),
                'started_ns': attrs.get('started_ns', 0), 'ended_ns': attrs.get('ended_ns', 0),
                'ros_distro': _ros_distro(reader, sid) or 'unknown', 'start_ns': start, 'end_ns': end,
                'duration_ns': end - start, 'message_count': sum(t.count for t in topics),
                'topics': [{'topic': t.topic, 'type': t.type, 'count': t.count, 'serialization': t.serialization,
                            'type_hash': t.type_hash, 'qos': t.qos, 'first_ns': t.first_ns, 'last_ns': t.last_ns}
                           for t in topics],
                'videos': [{'name': v.name, 'topic': v.topic, 'path': str(v.path), 'frames': v.rows,
                            'width': v.width, 'height': v.height, 'codec': v.codec, 'state': v.state,
                            'dropped': v.dropped} for v in reader.videos(sid)],
                # Gaps told: GPIO events the live stream skipped (still missing / fetched from the pilot's
                # journal), and messages kept apart because they contradicted stored ones.
                'events_missing': int(attrs.get('events_missing', 0)),
                'events_recovered': int(attrs.get('events_recovered', 0)),
                'conflicts': int(attrs.get('conflicts', 0))})
    return out


def _provenance(reader: SubjectReader, session: str, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    try:
        return reader.provenance(session)
    except StoreError as exc:  # damaged provenance must not hide the bag
        if warn is not None:
            warn(f'provenance of session {session} left out: {exc}')
        return {}


def _ros_distro(reader: SubjectReader, session: str, provenance: Mapping[str, Any] | None = None) -> str:
    """The ROS distro the session ran with (provenance ``ros.distro``), or ''."""
    ros = (provenance if provenance is not None else _provenance(reader, session)).get('ros')
    return str(ros.get('distro') or '') if isinstance(ros, Mapping) else ''


def format_size(size: int) -> str:
    """Bytes as ``ros2 bag info`` prints them (``512 B``, ``1.5 KiB``, ...)."""
    value, unit = float(size), 0
    units = ('B', 'KiB', 'MiB', 'GiB', 'TiB')
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    return f'{value:.0f} {units[unit]}' if unit == 0 else f'{value:.1f} {units[unit]}'


def format_time(ns: int) -> str:
    """A time as ``ros2 bag info`` prints it: local date and time to the millisecond, then epoch seconds."""
    seconds, ms = divmod(ns // 1_000_000, 1000)
    stamp = time.strftime('%b %e %Y %H:%M:%S', time.localtime(seconds))
    return f'{stamp}.{ms:03d} ({seconds}.{ms:03d})'


def format_duration(ns: int) -> str:
    seconds, ms = divmod(ns // 1_000_000, 1000)
    return f'{seconds}.{ms:03d}s'


_LABEL = 19  # label column width of `ros2 bag info` (its longest label plus one space)


def format_info(data: Mapping[str, Any]) -> str:
    """``ros2 bag info``'s layout, with one block per session."""
    def row(label: str, value: Any) -> str:
        return f'{label + ":":<{_LABEL}}{value}'

    lines = ['', row('Files', data['path']), row('Bag size', format_size(data['size'])),
             row('Storage id', data['storage_id']), row('Subject', data['subject']),
             row('Sessions', len(data['sessions']))]
    for s in data['sessions']:
        lines += ['', row('Session', f"{s['id']} | Pilot: {s['pilot']} | Task: {s['task']} | State: {s['state']}"),
                  row('ROS Distro', s['ros_distro']), row('Duration', format_duration(s['duration_ns'])),
                  row('Start', format_time(s['start_ns']) if s['message_count'] else '-'),
                  row('End', format_time(s['end_ns']) if s['message_count'] else '-'),
                  row('Messages', s['message_count'])]
        topics = [f"Topic: {t['topic']} | Type: {t['type']} | Count: {t['count']} | "
                  f"Serialization Format: {t['serialization']}" for t in s['topics']]
        lines.append(row('Topic information', topics[0] if topics else ''))
        lines += [' ' * _LABEL + t for t in topics[1:]]
        # Not in `ros2 bag info`: camera topics recorded as MP4 rather than in the bag.
        videos = [f"Topic: {v['topic']} | Frames: {v['frames']} | {v['width']}x{v['height']} {v['codec']} | "
                  f"File: {v['path']}" for v in s.get('videos', ())]
        if videos:
            lines.append(row('Videos', videos[0]))
            lines += [' ' * _LABEL + v for v in videos[1:]]
        # Not in `ros2 bag info` either: what the recording lacks or holds apart, always shown.
        lines.append(row('Gaps', f"GPIO events missing: {s.get('events_missing', 0)} | recovered from the pilot: "
                                 f"{s.get('events_recovered', 0)} | conflicts kept apart: {s.get('conflicts', 0)}"))
    return '\n'.join(lines) + '\n'


# ------------------------------------------------------------------------------------------- export

def default_output(subject: str, session: str) -> Path:
    """Where ``export`` writes without ``-o``: ``<subject>_<session>.mcap`` in the working directory."""
    return Path(f'{subject}_{session}.mcap')


def export_mcap(path: Path | str, out: Path | str | None = None, session: str | None = None,
                topics: Sequence[str] | None = None, *, force: bool = False, compression: str = 'zstd',
                warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write a session's bag (default: the last session; ``topics``: a subset) to a rosbag2 MCAP file.

    ``out``: a file, or an existing directory to write the default name into (default: the working
    directory). An existing file is replaced only with ``force``; the file is written under a temporary
    name and renamed when complete, so a failed export leaves nothing half-written. Log and publish times
    are the receive times. ``warn`` gets one line per problem that does not stop the export (a topic
    without a stored definition). Returns {path, session, messages, topics}.
    """
    from mcap.exceptions import UnsupportedCompressionError
    from mcap.writer import CompressionType, Writer

    if compression not in COMPRESSIONS:
        raise BagError(f'unknown compression {compression!r}; choose one of {", ".join(COMPRESSIONS)}')
    path = Path(path)
    warn = warn or (lambda text: None)
    with SubjectReader(path) as reader:
        sid = select_session(reader, session)
        chosen = select_topics(reader, sid, topics)
        subject = reader.subject
        target = _output_path(path, out, subject, sid, force)
        attrs = reader.session(sid)
        provenance = _provenance(reader, sid, warn)
        distro = _ros_distro(reader, sid, provenance)
        qos = {t.topic: topic_qos(t.qos, f'{path}: session {sid}: topic {t.topic}') for t in chosen}
        # Not mkstemp: its 0600 mode would stay on the output; this name is unique per process and call.
        tmp = target.parent / f'.{target.name}.{os.getpid()}.{time.monotonic_ns()}.partial'
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            raise BagError(f'{target}: cannot write there ({exc.strerror}); choose another output (-o)') from None
        try:
            with os.fdopen(fd, 'wb') as stream:
                try:
                    writer = Writer(stream, compression=CompressionType[compression.upper()])
                except UnsupportedCompressionError as exc:
                    raise BagError(f'cannot write {compression} compression: {exc}; pip install '
                                   f'{"zstandard" if compression == "zstd" else "lz4"}, or pass --compression '
                                   'none') from None
                writer.start(profile='ros2', library=f'autopilot-ros {_version()}')
                schemas: dict[tuple[str, str], int] = {}
                channels: dict[str, int] = {}
                for t in chosen:
                    schema = _schema_text(t, warn)
                    key = (t.type, schema)
                    if key not in schemas:
                        schemas[key] = writer.register_schema(t.type, 'ros2msg', schema.encode())
                    channels[t.topic] = writer.register_channel(
                        t.topic, 'cdr', schemas[key],
                        {'offered_qos_profiles': offered_qos_profiles(qos[t.topic]), 'topic_type_hash': t.type_hash})
                counts = dict.fromkeys(channels, 0)
                first = last = None
                for msg in reader.messages(sid, [t.topic for t in chosen]):
                    writer.add_message(channels[msg.topic], log_time=msg.recv_ns, data=msg.data,
                                       publish_time=msg.recv_ns, sequence=counts[msg.topic])
                    counts[msg.topic] += 1
                    first = msg.recv_ns if first is None else first
                    last = msg.recv_ns
                total = sum(counts.values())
                start, end = (first or 0), (last or 0)
                metadata = _rosbag2_metadata(target.name, chosen, qos, counts, start, end - start, distro,
                                             {'autopilot.subject': subject, 'autopilot.session': sid,
                                              'autopilot.source': str(path.resolve())})
                writer.add_metadata('rosbag2', {'serialized_metadata': metadata, 'ROS_DISTRO': distro})
                writer.add_metadata('autopilot_session', _session_metadata(subject, sid, attrs, provenance))
                writer.finish()
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return {'path': str(target), 'session': sid, 'messages': total, 'topics': counts}


def _output_path(source: Path, out: Path | str | None, subject: str, session: str, force: bool) -> Path:
    target = Path(out) if out is not None else default_output(subject, session)
    if target.is_dir():
        target = target / default_output(subject, session)
    if not target.parent.is_dir():
        raise BagError(f'{target}: directory {target.parent} does not exist; create it or choose another -o')
    if target.exists():
        if os.path.samefile(target, source):
            raise BagError(f'{target} is the subject file itself: choose another output (-o)')
        if not force:
            raise BagError(f'{target} exists; pass --force to overwrite it, or choose another output (-o)')
        if target.is_dir():
            raise BagError(f'{target} is a directory; choose a file name (-o)')
    return target


def _schema_text(t: TopicInfo, warn: Callable[[str], None]) -> str:
    if t.interface_text.strip():
        return mcap_schema(t.type, t.interface_text)
    # Nothing stored (an old or hand-made file): the installed definition, if any, is the best guess.
    try:
        from autopilot_runtime_py.messages import InterfaceNotFoundError, interface_text
        text = interface_text(t.type)
    except (ImportError, InterfaceNotFoundError) as exc:
        warn(f'{t.topic}: no interface definition of {t.type} stored or installed ({exc}); its messages are '
             'exported with an empty schema, which ros2 bag play accepts but Foxglove cannot decode')
        return ''
    installed = installed_type_hash(t.type)
    note = '' if not t.type_hash or installed == t.type_hash else (
        f' (its hash {installed} differs from the recorded {t.type_hash}: check the decoded values)')
    warn(f'{t.topic}: no interface definition stored; used the installed {t.type}{note}')
    return mcap_schema(t.type, text)


def _rosbag2_metadata(name: str, topics: Sequence[TopicInfo], qos: Mapping[str, Qos], counts: Mapping[str, int],
                      start: int, duration: int, distro: str, custom: Mapping[str, str]) -> str:
    """rosbag2's bag metadata (``metadata.yaml`` content), which its MCAP reader takes from a metadata record."""
    total = sum(counts.values())
    data = {
        'version': ROSBAG2_METADATA_VERSION, 'storage_identifier': 'mcap',
        'duration': {'nanoseconds': duration}, 'starting_time': {'nanoseconds_since_epoch': start},
        'message_count': total,
        'topics_with_message_count': [
            {'topic_metadata': {'name': t.topic, 'type': t.type, 'serialization_format': 'cdr',
                                'offered_qos_profiles': offered_qos_profiles(qos[t.topic]),
                                'type_description_hash': t.type_hash},
             'message_count': counts[t.topic]} for t in topics],
        'compression_format': '', 'compression_mode': '',  # rosbag2's file/message compression: not used
        'relative_file_paths': [name],
        'files': [{'path': name, 'starting_time': {'nanoseconds_since_epoch': start},
                   'duration': {'nanoseconds': duration}, 'message_count': total}],
        'custom_data': dict(custom), 'ros_distro': distro,
    }
    return yaml.safe_dump(data, sort_keys=False)


def _session_metadata(subject: str, session: str, attrs: Mapping[str, Any],
                      provenance: Mapping[str, Any]) -> dict[str, str]:
    """The session's attributes and provenance as MCAP metadata (strings; provenance items as JSON)."""
    out = {'subject': subject, 'session_id': session}
    out.update({k: str(v) for k, v in attrs.items()})
    out.update({f'provenance.{k}': json.dumps(v, sort_keys=True) for k, v in provenance.items()})
    return out


def _version() -> str:
    try:
        from importlib.metadata import version
        return version('autopilot_terminal')
    except Exception:  # noqa: BLE001 - a version string is a nicety
        return 'unknown'
