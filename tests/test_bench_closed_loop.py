"""Smoke test of bench/closed_loop.py: a --quick run closes every loop of every row and writes complete JSON.

No timing assertions (numbers depend on the machine and its load): only that the gpio node, the pilot
running the echo task and the bench process closed every sample's loop in every rig configuration
(across processes, in one process with and without intra-process delivery), that both bare rclpy references answered every ping, that
the hops add up, and that the target lines were printed.
"""

from __future__ import annotations

from pathlib import Path

from conftest import run_bench

RIG = ('processes', 'one-process', 'one-process-dds')
BARE = ('bare-processes', 'bare-one-process')


def test_quick_run_closes_every_loop(domain_id: int, tmp_path: Path) -> None:
    text, result = run_bench('closed_loop.py', domain_id, tmp_path)
    params = result['params']
    assert params['quick'] is True and params['samples'] == 30 and params['rounds'] == 1
    assert result['machine']['cpu_count'] and result['versions']['ros-rclpy']
    configs = result['configs']
    assert set(configs) == set(RIG + BARE), text
    for name, c in configs.items():
        assert c['error'] is None, (name, c['error'])
        assert c['measured'] == params['samples'] and c['lost'] == 0, (name, c['measured'], c['lost'])
        samples = c['samples_us']
        assert samples['k'] == list(range(params['samples'] + params['warmup'])), name
        assert not any(samples['lost']) and samples['warmup'].count(True) == params['warmup'], name
        assert c['rounds'] == 1 and set(c['runs'][0]['exit_codes'].values()) == {0}, (name, c['runs'])
        loop = c['hops']['loop']
        assert loop['n'] == params['samples'] and 0 < loop['p50'] <= loop['p99'] <= loop['max'], (name, loop)
    for name in RIG:
        c = configs[name]
        assert set(c['hops']) == {'input', 'decide', 'apply', 'observe', 'loop', 'cmd_out'}, name
        s = c['samples_us']
        for r in (dict(zip(s, values, strict=True)) for values in zip(*s.values(), strict=True)):
            # t3-t1 = (t2-t1) + (t3-t2), to the rounding of the microsecond values
            assert abs(r['loop'] - r['decide'] - r['apply']) < 0.2 and abs(r['cmd_out'] - r['input'] - r['loop']) < 0.2
        # 36 edges = 18 pokes: one trial of 10 ended (on edge k=19), and the bench acked it like a terminal.
        assert [k for k, end in zip(s['k'], s['trial_end'], strict=True) if end] == [19], name
        assert c['n_trials'] == 1 and c['runs'][0]['acks'] >= 1, (name, c['n_trials'], c['runs'])
        assert c['loop_trial_end']['n'] == 1
    # one-process uses autopilot_core.intra between the gpio node and the pilot; one-process-dds does not.
    assert configs['one-process']['runs'][0]['rig']['intra_process'] is True
    assert configs['one-process-dds']['runs'][0]['rig']['intra_process'] is False
    for name in BARE:
        assert set(configs[name]['hops']) == {'decide', 'apply', 'loop'}, name
    rows = {(r['config'], r['hop']) for r in result['rows']}
    assert ('processes', 'loop') in rows and ('bare-one-process', 'loop') in rows and len(rows) == 6 + 6 + 6 + 3 + 3
    ratios = [r for r in result['rows'] if r['config'] in RIG and r['hop'] in ('decide', 'apply', 'loop')]
    assert all(r['x_bare_p50'] > 0 for r in ratios)
    targets = {(t['config'], t['metric']): t for t in result['targets']}
    assert set(targets) == {('processes', 'loop p50'), ('processes', 'loop p99'), ('one-process', 'loop p50')}
    assert all(isinstance(t['passed'], bool) and t['value_ms'] > 0 for t in targets.values())
    assert text.count('PASS: ') + text.count('FAIL: ') == 3, text
    assert 't3-t1 LOOP edge -> output applied' in text and 'x bare p50' in text
