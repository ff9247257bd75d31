"""NWB export of a subject file (``autopilot export FILE --to nwb``): what pynwb reads back equals the HDF5.

The subject files here are built with SubjectFile as the recorder would write them: free-water shaping, then
2AFC sessions with a learning curve, correction trials, a graduation (step change) mid-session, GPIO edges
and sound onsets per trial, drawn from a seeded generator (:func:`make_subject`, also used by test_summary).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import cli, cli_many, error_line, ok

from autopilot_terminal.nwb import ExportError, export_nwb, nwb_file_name, trial_times
from autopilot_terminal.storage import TYPE_BOOL, TYPE_FLOAT64, TYPE_INT64, TYPE_STRING, SubjectFile, SubjectReader

TWO_AFC_FIELDS = [('target', TYPE_STRING, ''), ('response', TYPE_STRING, ''), ('correct', TYPE_BOOL, ''),
                  ('correction', TYPE_BOOL, ''), ('rt_ms', TYPE_FLOAT64, 'ms'), ('hold_ms', TYPE_FLOAT64, 'ms'),
                  ('onset_ms', TYPE_FLOAT64, 'ms'), ('stim', TYPE_STRING, ''), ('p_left', TYPE_FLOAT64, ''),
                  ('reward_given_ul', TYPE_FLOAT64, 'uL')]
FREE_WATER_FIELDS = [('port', TYPE_STRING, ''), ('rewarded', TYPE_BOOL, ''), ('latency_ms', TYPE_FLOAT64, 'ms'),
                     ('wrong_pokes', TYPE_INT64, '')]
PROTOCOL = 'tone_discrimination'
STEPS = ['free_water', 'tones_easy', 'tones_hard']
BIOGRAPHY = {'species': 'mouse', 'sex': 'female', 'dob': '2024-01-02', 'genotype': 'C57BL/6J wild type',
             'cage': 'B12'}
DAY_NS = 86_400 * 10**9
T0_NS = 1_714_557_600 * 10**9  # 2024-05-01 10:00 UTC
PROVENANCE = {'packages': {'autopilot_pilot': '0.1.0', 'rclpy': '9.1.0'}, 'git': {'commit': 'abc123', 'dirty': False},
              'ros': {'distro': 'jazzy', 'rmw': 'rmw_fastrtps_cpp', 'install': 'pip'}}


def _gpio(stamp: int, tick_us: int, device: str, pin: int, level: bool) -> dict[str, Any]:
    return {'stamp_ns': stamp, 'tick_us': tick_us, 'device': device, 'pin': pin, 'level': level, 'recv_ns': stamp + 900_000}


def _two_afc_session(s: SubjectFile, sid: str, start_ns: int, rng: np.random.Generator, n: int, skill0: float,
                     step: int, graduate_at: int | None, state: dict[str, Any]) -> None:
    """A 2AFC session: accuracy grows with the subject's experience (``state['seen']``); graduation after
    trial ``graduate_at`` moves to the harder step, where accuracy dips."""
    s.begin_session(sid, {'pilot': 'rig1', 'task': 'two_afc', 'protocol': PROTOCOL, 'step': step,
                          'step_name': STEPS[step], 'started_ns': start_ns, 'fields': TWO_AFC_FIELDS,
                          'provenance': PROVENANCE})
    trials, gpio, sound, t = [], [], [], start_ns
    tick0 = int(rng.integers(1_000, 10**9))
    correction_target = None
    bias = state.get('bias', 0.25)  # a right-side preference that training wears down
    for k in range(1, n + 1):
        state['seen'] += 1
        if graduate_at is not None and k == graduate_at + 1:
            s.add_steps(sid, [{'seq': 1, 'after_trial': graduate_at, 'from_step': step, 'to_step': step + 1,
                               'from_step_name': STEPS[step], 'to_step_name': STEPS[step + 1], 'protocol': PROTOCOL,
                               'reason': 'accuracy 0.82 >= 0.80 over the last 50 trials', 'stamp_ns': t,
                               'recv_ns': t + 1_000_000}])
            step = step + 1
        hard = step == 2
        p_correct = 0.5 + (0.45 - 0.1 * hard) * (1 - math.exp(-state['seen'] / 250)) * skill0
        p_left = 0.5 if correction_target is None else (1.0 if correction_target == 'left' else 0.0)
        target = correction_target or ('left' if rng.random() < 0.5 else 'right')
        t_center = t + int(rng.uniform(0.5, 4.0) * 1e9)
        hold_ms = float(rng.uniform(60, 250))
        if rng.random() < 0.02:
            response, correct, rt = 'none', False, math.nan
        else:
            correct = bool(rng.random() < p_correct)
            response = target if correct else ('right' if target == 'left' else 'left')
            if not correct and rng.random() < bias:
                response = 'right'
                correct = target == 'right'
            rt = float(rng.lognormal(math.log(350), 0.35))
        stim = f'tone_{target}'
        onset_ms = float(rng.uniform(2, 6))
        tick = tick0 + (t_center - start_ns) // 1000
        gpio += [_gpio(t_center, tick, 'poke_center', 17, True),
                 _gpio(t_center + int(hold_ms * 1e6), tick + int(hold_ms * 1000), 'poke_center', 17, False)]
        sound.append({'stamp_ns': t_center + int(onset_ms * 1e6), 'sound_id': stim, 'play_id': 2 * k, 'source': 0,
                      'ok': True, 'latency_ms': onset_ms - 1, 'duration_ms': 200.0, 'recv_ns': t_center + 10**7})
        t_end = t_center + int((hold_ms + 5000) * 1e6)
        if response != 'none':
            t_side = t_center + int((hold_ms + rt) * 1e6)
            pin = 22 if response == 'left' else 27
            gpio += [_gpio(t_side, tick + int((hold_ms + rt) * 1000), f'poke_{response}', pin, True),
                     _gpio(t_side + 200_000_000, tick + int((hold_ms + rt + 200) * 1000), f'poke_{response}', pin,
                           False)]
            if correct:
                vpin = 5 if response == 'left' else 6
                gpio += [_gpio(t_side + 1_000_000, tick + int((hold_ms + rt + 1) * 1000), f'valve_{response}', vpin,
                               True),
                         _gpio(t_side + 41_000_000, tick + int((hold_ms + rt + 41) * 1000), f'valve_{response}', vpin,
                               False)]
                t_end = t_side + 10**9  # iti 1 s
            else:
                sound.append({'stamp_ns': t_side + 3_000_000, 'sound_id': 'noise', 'play_id': 2 * k + 1, 'source': 0,
                              'ok': True, 'latency_ms': 2.5, 'duration_ms': 500.0, 'recv_ns': t_side + 10**7})
                t_end = t_side + 3 * 10**9  # punish timeout 3 s
        trials.append({'trial_number': k, 'stamp_ns': t_end, 'recv_ns': t_end + 2_000_000, 'step': step,
                       'step_name': STEPS[step], 'target': target, 'response': response, 'correct': correct,
                       'correction': correction_target is not None, 'rt_ms': rt, 'hold_ms': hold_ms,
                       'onset_ms': onset_ms, 'stim': stim, 'p_left': p_left,
                       'reward_given_ul': 5.0 if correct else 0.0})
        if response != 'none':
            correction_target = None if correct else target
        t = t_end
    state['bias'] = bias * 0.7
    # Out of order, as a pilot's resend after a reconnect can deliver them: the export sorts by number.
    s.add_trials(sid, trials[5:] + trials[:5])
    s.add_events(sid, 'gpio', gpio)
    s.add_events(sid, 'sound', sound)
    s.end_session(sid, ended_ns=t + 10**9)


def _free_water_session(s: SubjectFile, sid: str, start_ns: int, rng: np.random.Generator, n: int) -> None:
    s.begin_session(sid, {'pilot': 'rig1', 'task': 'free_water', 'protocol': PROTOCOL, 'step': 0,
                          'step_name': STEPS[0], 'started_ns': start_ns, 'fields': FREE_WATER_FIELDS})
    rows, t = [], start_ns
    for k in range(1, n + 1):
        rewarded = bool(rng.random() < 0.9)
        latency = float(rng.exponential(4000)) if rewarded else math.nan
        t += int(((latency if rewarded else 30_000) + 1000) * 1e6)
        rows.append({'trial_number': k, 'stamp_ns': t, 'recv_ns': t + 10**6, 'step': 0, 'step_name': STEPS[0],
                     'port': 'left' if rng.random() < 0.5 else 'right', 'rewarded': rewarded, 'latency_ms': latency,
                     'wrong_pokes': int(rng.poisson(1.5))})
    s.add_trials(sid, rows)
    s.end_session(sid, ended_ns=t + 10**9)


def make_subject(path: Path, *, subject: str = 'mouse7', free_water: int = 2, two_afc: int = 5, seed: int = 7,
                 biography: dict[str, Any] | None = None) -> list[str]:
    """A subject file with ``free_water`` shaping sessions, then ``two_afc`` 2AFC sessions (one a day; the
    graduation to the hard step happens in the third 2AFC session); returns the session ids in order."""
    rng = np.random.default_rng(seed)
    sids = []
    with SubjectFile.create(path, subject, BIOGRAPHY if biography is None else biography,
                            created_ns=T0_NS - DAY_NS) as s:
        s.add_history('assign', protocol=PROTOCOL, step=0, step_name=STEPS[0], time_ns=T0_NS - DAY_NS + 1)
        state = {'seen': 0}
        for day in range(free_water + two_afc):
            sid = f'{day:08x}-4c1d-4e2a-9b7f-{rng.integers(16**12):012x}'
            start = T0_NS + day * DAY_NS + int(rng.uniform(0, 3600)) * 10**9
            if day < free_water:
                _free_water_session(s, sid, start, rng, int(rng.integers(40, 70)))
            else:
                i = day - free_water
                if i == 0:
                    s.add_history('step', protocol=PROTOCOL, step=1, step_name=STEPS[1], time_ns=start - 10**9,
                                  detail={'reason': 'manual: shaping done'})
                step = 1 if i <= 2 else 2
                _two_afc_session(s, sid, start, rng, int(rng.integers(120, 200)), 1.0, step,
                                 80 if i == 2 else None, state)
            sids.append(sid)
    return sids


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def subject_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp('nwb') / 'mouse7.h5'
    return path, make_subject(path, free_water=1, two_afc=3)


@pytest.fixture(scope='module')
def exported(subject_file: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory):
    path, sids = subject_file
    out = tmp_path_factory.mktemp('nwb_out') / 'nwb'
    return export_nwb(path, out), out


def _read(path: Path):
    from pynwb import NWBHDF5IO

    io = NWBHDF5IO(path, 'r')
    return io, io.read()


# --- the export --------------------------------------------------------------------------------

def test_one_valid_nwb_file_per_session_named_by_subject_start_and_id(subject_file, exported) -> None:
    from pynwb import validate

    path, sids = subject_file
    written, out = exported
    assert [w.session_id for w in written] == sids
    with SubjectReader(path) as r:
        names = [nwb_file_name('mouse7', sid, r.session(sid)['started_ns']) for sid in sids]
    assert sorted(p.name for p in out.iterdir()) == sorted(names) == names  # time order sorts as names
    assert names[0] == f'sub-mouse7_ses-20240501T{names[0][24:30]}-{sids[0]}_behavior.nwb'
    for w in written:
        assert w.path.parent == out
        assert validate(path=str(w.path)) == [], w.path


def test_trials_equal_the_hdf5_and_times_derive_from_the_end_stamps(subject_file, exported) -> None:
    path, sids = subject_file
    written, _ = exported
    with SubjectReader(path) as r:
        for w in written:
            attrs, fields = r.session(w.session_id), r.trial_fields(w.session_id)
            cols = r.trials(w.session_id)
            order = np.argsort(cols['trial_number'])
            io, nwb = _read(w.path)
            with io:
                df = nwb.trials.to_dataframe()
                assert w.trials == len(df) == cols['trial_number'].size > 0
                assert df['trial_number'].tolist() == sorted(cols['trial_number'].tolist())
                for name, kind, unit in fields:
                    want, got = cols[name][order], df[name].to_numpy()
                    if kind == TYPE_FLOAT64:
                        np.testing.assert_array_equal(got, want)  # NaN where NaN
                    else:
                        assert got.tolist() == want.tolist(), name
                    desc = nwb.trials[name].description
                    assert f'unit {unit or "none"}' in desc, desc
                assert df['step_name'].tolist() == cols['step_name'][order].tolist()
                # Documented derivation: stop = end stamp - session start; start = previous stop (0 first).
                stop = (cols['stamp_ns'][order] - attrs['started_ns']) / 1e9
                np.testing.assert_allclose(df['stop_time'], stop, rtol=0, atol=1e-9)
                assert df['start_time'].iloc[0] == 0
                np.testing.assert_array_equal(df['start_time'].to_numpy()[1:], df['stop_time'].to_numpy()[:-1])
                assert (np.diff(df['stop_time']) > 0).all() and (df['stop_time'] > df['start_time']).all()
                assert nwb.identifier == nwb.session_id == w.session_id
                start = dt.datetime.fromtimestamp(attrs['started_ns'] / 1e9, tz=dt.timezone.utc)
                assert nwb.session_start_time == start and nwb.session_start_time.utcoffset() == dt.timedelta(0)
                assert attrs['task'] in nwb.session_description


def test_subject_events_steps_and_provenance(subject_file, exported) -> None:
    path, sids = subject_file
    written, _ = exported
    graduated = written[3]  # free water, 2AFC easy, 2AFC easy, then 2AFC with the graduation
    assert graduated.session_id == sids[3] and graduated.step_changes == 1
    with SubjectReader(path) as r:
        for w in written:
            io, nwb = _read(w.path)
            with io:
                sub = nwb.subject
                assert (sub.subject_id, sub.species, sub.sex, sub.genotype) == (
                    'mouse7', 'Mus musculus', 'F', 'C57BL/6J wild type')
                assert sub.date_of_birth == dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)
                assert sub.age == f'P{(nwb.session_start_time - sub.date_of_birth).days}D'
                assert json.loads(sub.description.split(': ', 1)[1]) == BIOGRAPHY  # nothing lost
                started = r.session(w.session_id)['started_ns']
                gpio, sound = r.events(w.session_id, 'gpio'), r.events(w.session_id, 'sound')
                events = nwb.events
                if gpio['stamp_ns'].size:
                    g = events['gpio'].to_dataframe()
                    order = np.argsort(gpio['stamp_ns'], kind='stable')
                    assert w.gpio_events == len(g) == gpio['stamp_ns'].size
                    np.testing.assert_allclose(g['timestamp'], (gpio['stamp_ns'][order] - started) / 1e9, atol=1e-9)
                    assert g['device'].tolist() == gpio['device'][order].tolist()
                    assert g['level'].tolist() == gpio['level'][order].tolist()
                    assert g['tick_us'].tolist() == gpio['tick_us'][order].tolist()
                    assert events['gpio'].timestamp.resolution == 1e-6
                    snd = events['sound'].to_dataframe()
                    assert snd['sound_id'].tolist() == sound['sound_id'][np.argsort(sound['stamp_ns'])].tolist()
                    assert set(snd['onset_source']) == {'dac'} and (snd['duration'] > 0).all()
                else:  # free water: no events recorded, no empty tables written
                    assert 'gpio' not in events and 'sound' not in events and w.gpio_events == 0
                if r.provenance(w.session_id):
                    assert json.loads(nwb.data_collection.split(': ', 1)[1]) == PROVENANCE
                else:  # the free-water sessions here were recorded without provenance
                    assert nwb.data_collection is None
                assert 'autopilot_terminal.nwb.export_nwb' in nwb.source_script
                epochs = nwb.epochs.to_dataframe()
                assert epochs['start_time'].iloc[0] == 0
                assert epochs['stop_time'].iloc[-1] >= nwb.trials['stop_time'][-1]
                if w.session_id == graduated.session_id:
                    changes = events['protocol_step_changes'].to_dataframe()
                    assert changes[['after_trial', 'from_step_name', 'to_step_name']].values.tolist() == [
                        [80, 'tones_easy', 'tones_hard']]
                    assert epochs['step_name'].tolist() == ['tones_easy', 'tones_hard']
                    # The change's time is the end of trial 80, where the graduation took effect.
                    assert epochs['stop_time'].iloc[0] == pytest.approx(nwb.trials['stop_time'][79])
                    assert list(epochs['tags'].iloc[1]) == ['tones_hard']
                else:
                    assert 'protocol_step_changes' not in events and len(epochs) == 1


def test_one_session_to_a_file_and_refusals(subject_file, tmp_path: Path) -> None:
    path, sids = subject_file
    target = tmp_path / 'one.nwb'
    [w] = export_nwb(path, target, session=sids[1])
    assert w.path == target and target.exists()
    with pytest.raises(ExportError, match=r'one\.nwb: exists; pass overwrite=True to replace'):
        export_nwb(path, target, session=sids[1])
    export_nwb(path, target, session=sids[1], overwrite=True)
    with pytest.raises(ExportError, match=r'one \.nwb file holds one session and 4'):
        export_nwb(path, tmp_path / 'all.nwb')
    with pytest.raises(ExportError, match="no session 'nope'; sessions of mouse7: " + sids[0]):
        export_nwb(path, tmp_path, session='nope')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['one.nwb']  # nothing half-written left behind


def test_subject_mapping_keeps_unknowns_out() -> None:
    from autopilot_terminal.nwb import nwb_subject

    start = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
    s = nwb_subject('r1', {'species': 'Rattus norvegicus', 'sex': 'intersex?', 'dob': 'last spring',
                           'age': 'P12W', 'weight': '310 g'}, start)
    assert (s.species, s.sex, s.date_of_birth, s.age, s.weight) == ('Rattus norvegicus', None, None, 'P12W', '310 g')
    s = nwb_subject('m2', {}, start)
    assert (s.species, s.sex, s.age, s.description) == (None, None, None, None)
    assert nwb_subject('m3', {'Sex': 'M', 'species': 'Rat'}, start).sex == 'M'
    assert nwb_subject('m3', {'species': 'Rat'}, start).species == 'Rattus norvegicus'


def test_trial_times_clamp_a_clock_step() -> None:
    start, stop = trial_times(np.array([11, 12, 11, 15]) * 10**9, 10 * 10**9)
    assert stop.tolist() == [1, 2, 1, 5] and start.tolist() == [0, 1, 1, 1]
    assert [a.size for a in trial_times(np.array([], dtype=np.int64), 0)] == [0, 0]
    # Known starts are used as sent; a trial without one (0) falls back to the previous stop.
    start, stop = trial_times(np.array([11, 12, 14]) * 10**9, 10 * 10**9, np.array([10.5e9, 0, 13.25e9]))
    assert stop.tolist() == [1, 2, 4] and start.tolist() == [0.5, 1, 3.25]


def test_a_session_without_trials_or_events_still_exports(tmp_path: Path) -> None:
    from pynwb import validate

    path = tmp_path / 'm9.h5'
    with SubjectFile.create(path, 'm9', {}) as s:
        s.begin_session('empty', {'task': 'two_afc', 'started_ns': T0_NS})  # running, never a trial
    [w] = export_nwb(path, tmp_path / 'out')
    assert (w.trials, w.gpio_events, w.sound_events) == (0, 0, 0)
    assert validate(path=str(w.path)) == []
    io, nwb = _read(w.path)
    with io:
        assert nwb.trials is None and 'still running' in nwb.notes


def test_a_recorded_video_is_an_external_image_series(tmp_path: Path) -> None:
    from pynwb import validate

    from autopilot_terminal.video import Frame, VideoSink, next_video_path

    path = tmp_path / 'data' / 'm8.h5'
    path.parent.mkdir()
    stamps = [T0_NS + 10**9 + k * 33_333_333 for k in range(12)]
    with SubjectFile.create(path, 'm8', {}) as s:
        s.begin_session('s1', {'pilot': 'rig1', 'task': 'two_afc', 'started_ns': T0_NS})
        name, mp4 = next_video_path(path, 's1', '/rig1/camera/image')
        mp4.parent.mkdir(parents=True)
        frames = [Frame(t, 'cam', 64, 48, 'bgr8', np.full((48, 64, 3), 20 * k, np.uint8)) for k, t in enumerate(stamps)]
        sink = VideoSink.for_frame(mp4, frames[0], fps=30.0, topic='/rig1/camera/image', block=True)
        s.add_video('s1', name, sink.attrs())
        for k, frame in enumerate(frames):
            sink.write(frame, T0_NS + 2 * 10**9 + k)
        summary = sink.close()
        s.add_frames('s1', name, sink.take_rows())
        s.finish_video('s1', name, summary.attrs())
        s.end_session('s1', ended_ns=T0_NS + 5 * 10**9)
    out = tmp_path / 'nwb'
    [w] = export_nwb(path, out)
    assert validate(path=str(w.path)) == []
    io, nwb = _read(w.path)
    with io:
        series = nwb.acquisition[name]
        assert series.format == 'external' and list(series.starting_frame) == [0]
        assert (out / series.external_file[0]).resolve() == mp4.resolve()
        assert list(series.dimension) == [64, 48]
        assert series.timestamps[:] == pytest.approx([(t - T0_NS) / 1e9 for t in stamps])


def test_a_stream_table_is_a_time_series(tmp_path: Path) -> None:
    from pynwb import validate

    from autopilot_terminal.streams import StreamDecoder

    path = tmp_path / 'm6.h5'
    decoder = StreamDecoder('geometry_msgs/msg/TwistStamped')
    spec = decoder.spec
    with SubjectFile.create(path, 'm6', {}) as s:
        s.begin_session('s1', {'pilot': 'rig1', 'task': 'two_afc', 'started_ns': T0_NS})
        s.add_stream('s1', 'rig1_wheel', '/rig1/wheel', 'geometry_msgs/msg/TwistStamped', spec, decoder.skipped,
                     decoder.time_columns)
        n = 20
        cols = {name: [0.0] * n for name, _ in spec}
        cols['recv_ns'] = [T0_NS + 10**9 + k * 10**7 + 5 for k in range(n)]
        cols['header.stamp'] = [T0_NS + 10**9 + k * 10**7 for k in range(n)]
        cols['header.frame_id'] = ['wheel'] * n
        cols['twist.angular.z'] = [0.5 * k for k in range(n)]
        s.add_stream_rows('s1', 'rig1_wheel', cols)
        s.end_session('s1', ended_ns=T0_NS + 5 * 10**9)
    [w] = export_nwb(path, tmp_path / 'nwb')
    assert validate(path=str(w.path)) == []
    io, nwb = _read(w.path)
    with io:
        series = nwb.acquisition['rig1_wheel']
        names = series.description.split('columns: ')[1].split(';')[0].split(', ')
        assert names == ['twist.linear.x', 'twist.linear.y', 'twist.linear.z', 'twist.angular.x', 'twist.angular.y',
                         'twist.angular.z']
        assert series.data[:, 5].tolist() == [0.5 * k for k in range(n)]
        assert series.timestamps[:] == pytest.approx([1.0 + k / 100 for k in range(n)])
        assert 'timestamps: header.stamp' in series.description


# --- the CLI -----------------------------------------------------------------------------------

def test_cli_export(subject_file, tmp_path: Path) -> None:
    path, sids = subject_file
    out = tmp_path / 'x'
    text = ok(cli(None, 'export', str(path), '--to', 'nwb', '-o', str(out)))
    lines = text.splitlines()
    assert len(lines) == len(sids) + 1 and lines[-1].startswith(f'wrote {len(sids)} NWB files')
    assert f'{out}/sub-mouse7_ses-' in lines[0] and f'session {sids[0]}' in lines[0] and 'trials' in lines[0]
    missing, foreign = tmp_path / 'nope.h5', tmp_path / 'notes.h5'
    foreign.write_text('not hdf5')
    (tmp_path / 's.nwb').write_text('an old export')
    exists, one, no_file, not_hdf5, no_session, csv = cli_many(
        None, ('export', str(path), '--to', 'nwb', '-o', str(out)),
        ('export', str(path), '--to', 'nwb', '--session', sids[2], '-o', str(tmp_path / 's.nwb'), '--force'),
        ('export', str(missing), '--to', 'nwb'), ('export', str(foreign), '--to', 'nwb'),
        ('export', str(path), '--to', 'nwb', '--session', 'nope', '-o', str(tmp_path / 'y')),
        ('export', str(path), '--to', 'csv'))
    assert error_line(exists).endswith(f'_behavior.nwb: exists (and {len(sids) - 1} more); pass --force to replace')
    assert ok(one).startswith(f'wrote {tmp_path / "s.nwb"} (session {sids[2]}: ')
    io, nwb = _read(tmp_path / 's.nwb')  # --force replaced what was there
    with io:
        assert nwb.identifier == sids[2]
    assert error_line(no_file) == (
        f'autopilot: error: {missing}: no such file; give the subject file (<data dir>/<subject>.h5)')
    assert 'not an HDF5 file' in error_line(not_hdf5)
    assert f"no session 'nope'; sessions of mouse7: {sids[0]}" in error_line(no_session)
    assert not (tmp_path / 'y').exists()
    assert csv.returncode == 2 and "invalid choice: 'csv'" in csv.stderr  # argparse's own usage error
