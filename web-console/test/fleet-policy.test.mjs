import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  describePolicyReply,
  fmtDuration,
  fmtFailureLimit,
  fmtPercent,
  fmtProvenance,
  fmtWindow,
  parseHHMM,
  readPolicyDoc,
  rememberable,
  resetRequest,
  staggeredWaves,
  strategyRequest,
  windowDeleteRequest,
  windowSetRequest,
} from '../src/fleet-policy.mjs';

// The document of docs/protocol.md, "Fleet policy".
const DOC = {
  fleet: 'plant-a',
  channel: 'stable',
  strategy: 'staggered',
  strategy_set: null,
  waves: [
    { name: 'canary', select: 'devices device-001,device-002',
      policy: { success_percent: 100.0, max_failures: 1, min_finished: 1, soak_s: 600, device_timeout_s: 3600, approval: false }, overrides: {} },
    { name: 'early', select: 'labels ring=early',
      policy: { success_percent: 100.0, min_finished: 1, soak_s: 0, device_timeout_s: 3600, approval: false,
                window: { days: ['sat', 'sun'], start: '22:00', end: '04:00' } },
      overrides: { window: { set_by: 'alice', set_at: '2026-03-10T12:00:00Z', value: { days: ['sat', 'sun'], start: '22:00', end: '04:00' } } } },
    { name: 'broad', select: 'the rest of the fleet',
      policy: { success_percent: 95.5, max_failure_percent: 5, min_finished: 3, soak_s: 5400, device_timeout_s: 7200, approval: true },
      overrides: { window: { set_by: 'bob', set_at: '2026-03-11T08:30:00Z', value: null }, approval: { set_by: 'carol', set_at: '2026-03-12T00:00:00Z' } } },
  ],
  components: { model: [{ wave: 'canary', policy: { success_percent: 100, soak_s: 1200 } }, { wave: 'early', policy: {} }] },
  overrides: [
    { key: 'window/early', value: {}, set_by: 'alice', set_at: '2026-03-10T12:00:00Z', in_use: true },
    { key: 'window/all', value: {}, set_by: 'dave', set_at: '2026-03-09T00:00:00Z', in_use: false },
  ],
};

test('readPolicyDoc: the protocol document, field by field', () => {
  const d = readPolicyDoc(DOC);
  assert.equal(d.fleet, 'plant-a');
  assert.equal(d.channel, 'stable');
  assert.equal(d.strategy, 'staggered');
  assert.equal(d.strategySet, null);
  assert.deepEqual(d.waves.map((w) => w.name), ['canary', 'early', 'broad']);
  assert.deepEqual(d.waves[0].policy, {
    success_percent: 100, max_failures: 1, max_failure_percent: null, min_finished: 1, soak_s: 600, device_timeout_s: 3600, approval: false, window: null,
  });
  assert.deepEqual(d.waves[1].policy.window, { days: ['sat', 'sun'], start: '22:00', end: '04:00' });
  assert.deepEqual(d.waves[1].overrides, [{ field: 'window', set_by: 'alice', set_at: '2026-03-10T12:00:00Z', removed: false }]);
  assert.deepEqual(d.waves[2].overrides.map((o) => [o.field, o.set_by, o.removed]), [['window', 'bob', true], ['approval', 'carol', false]]);
  assert.equal(d.components[0].component, 'model');
  assert.equal(d.components[0].waves[0].policy.soak_s, 1200);
  assert.deepEqual(d.overrides.map((o) => [o.key, o.in_use]), [['window/early', true], ['window/all', false]]);
  const set = readPolicyDoc({ ...DOC, strategy: 'all_at_once', strategy_set: { set_by: 'alice', set_at: '2026-03-10T12:00:00Z' } });
  assert.deepEqual(set.strategySet, { set_by: 'alice', set_at: '2026-03-10T12:00:00Z' });
});

test('readPolicyDoc: wrong types and junk become defaults, never a throw', () => {
  for (const junk of [null, 7, 'x', [], { waves: 'no' }, { waves: [null, 1, { policy: 'x', overrides: [1] }] }, { components: { c: 'x' }, overrides: {} }]) {
    const d = readPolicyDoc(junk, 'f');
    assert.equal(d.fleet, 'f');
    assert.equal(d.strategy, 'staggered');
    assert.ok(Array.isArray(d.waves) && Array.isArray(d.components) && Array.isArray(d.overrides));
  }
  const d = readPolicyDoc({ waves: [{ name: '<img src=x onerror=alert(1)>', policy: { soak_s: 1e400, approval: 'yes', window: { days: [1, 'mon'], start: 5 } } }] });
  assert.equal(d.waves[0].name, '<img src=x onerror=alert(1)>'); // shown as text by the view
  assert.equal(d.waves[0].policy.soak_s, null);
  assert.equal(d.waves[0].policy.approval, false);
  assert.deepEqual(d.waves[0].policy.window, { days: ['mon'], start: '', end: '' });
});

test('durations, percentages, failure limits in words', () => {
  assert.equal(fmtDuration(0), '0 s');
  assert.equal(fmtDuration(45), '45 s');
  assert.equal(fmtDuration(600), '10 min');
  assert.equal(fmtDuration(3600), '1 h');
  assert.equal(fmtDuration(5400), '1 h 30 min');
  assert.equal(fmtDuration(90061), '1 d 1 h 1 min 1 s');
  assert.equal(fmtDuration(null), '—');
  assert.equal(fmtDuration(-1), '—');
  assert.equal(fmtPercent(100), '100 %');
  assert.equal(fmtPercent(99.5), '99.5 %');
  assert.equal(fmtPercent(100 / 3), '33.33 %');
  assert.equal(fmtPercent(null), '—');
  const p = (max_failures, max_failure_percent) => ({ max_failures, max_failure_percent });
  assert.equal(fmtFailureLimit(p(1, null)), '1');
  assert.equal(fmtFailureLimit(p(null, 10)), '10 %');
  assert.equal(fmtFailureLimit(p(0, 2.5)), '0 or 2.5 %');
  assert.equal(fmtFailureLimit(p(null, null)), 'no limit');
});

test('windows in words', () => {
  assert.equal(fmtWindow(null), 'none');
  assert.equal(fmtWindow({ days: ['sat', 'sun'], start: '22:00', end: '04:00' }), 'sat, sun 22:00–04:00 UTC (ends the next day)');
  assert.equal(fmtWindow({ days: [], start: '01:00', end: '03:00' }), 'every day 01:00–03:00 UTC');
  assert.equal(fmtWindow({ days: ['mon'], start: '00:00', end: '00:00' }), 'mon all day (UTC)');
  assert.equal(fmtWindow({ days: [], start: '08:00', end: '24:00' }), 'every day 08:00–24:00 UTC');
  assert.equal(fmtProvenance({ set_by: 'alice', set_at: '2026-03-10T12:00:00Z' }), 'alice, 2026-03-10 12:00:00 UTC');
  assert.equal(fmtProvenance(null), '');
});

test('HH:MM as the controller reads it: 00:00..24:00', () => {
  assert.equal(parseHHMM('00:00'), 0);
  assert.equal(parseHHMM('22:30'), 22 * 60 + 30);
  assert.equal(parseHHMM('24:00'), 24 * 60);
  for (const bad of ['24:01', '25:00', '12:60', '9:00', '09:0', '0900', '09:00 ', 'ab:cd', '', null, 900, '+1:00', '１２:００'])
    assert.equal(parseHHMM(bad), null, String(bad));
});

test('window_set: from form values, days in week order and left out when none', () => {
  assert.deepEqual(windowSetRequest('plant-a', 'early', { days: new Set(['sun', 'sat']), start: '22:00', end: '04:00' }), {
    ok: true,
    fields: { fleet: 'plant-a', wave: 'early', window: { days: ['sat', 'sun'], start: '22:00', end: '04:00' } },
  });
  assert.deepEqual(windowSetRequest('plant-a', 'all', { days: [], start: ' 01:00', end: '03:00 ' }), {
    ok: true,
    fields: { fleet: 'plant-a', wave: 'all', window: { start: '01:00', end: '03:00' } },
  });
  const r = windowSetRequest('plant-a', 'early', { days: ['xyz', 'mon', 'mon'], start: '01:00', end: '02:00' });
  assert.deepEqual(r.fields.window.days, ['mon']);
  const bad = windowSetRequest('plant-a', 'early', { start: '25:00', end: '04:00' });
  assert.equal(bad.ok, false);
  assert.match(bad.message, /^start: expected HH:MM \(UTC.*got "25:00"/);
  const bad2 = windowSetRequest('plant-a', 'early', { start: '22:00', end: '' });
  assert.equal(bad2.ok, false);
  assert.match(bad2.message, /^end: /);
});

test('window_delete, policy_reset, strategy_set fields', () => {
  assert.deepEqual(windowDeleteRequest('plant-a', 'early'), { fleet: 'plant-a', wave: 'early' });
  assert.deepEqual(resetRequest('plant-a'), { fleet: 'plant-a' });
  const waves = ['canary', 'early', 'broad'];
  assert.deepEqual(strategyRequest('plant-a', 'staggered', ['broad', 'canary', 'other'], waves), {
    ok: true,
    fields: { fleet: 'plant-a', strategy: 'staggered', approval: ['canary', 'broad'] },
  });
  assert.deepEqual(strategyRequest('plant-a', 'all_at_once', [], ['all']).fields, { fleet: 'plant-a', strategy: 'all_at_once', approval: [] });
  assert.deepEqual(strategyRequest('plant-a', 'all_at_once', null, ['all']).fields, { fleet: 'plant-a', strategy: 'all_at_once' });
  assert.equal(strategyRequest('plant-a', 'x', [], []).ok, false);
});

test('staggered waves: the document, else what was remembered, else what the retained state names', () => {
  const doc = readPolicyDoc(DOC);
  assert.deepEqual(staggeredWaves({ doc }), { names: ['canary', 'early', 'broad'], source: 'policy' });
  assert.deepEqual(rememberable(doc), { names: ['canary', 'early', 'broad'], approval: ['broad'] });
  const all = readPolicyDoc({
    ...DOC,
    strategy: 'all_at_once',
    waves: [{ name: 'all', select: 'every device of the fleet', policy: {}, overrides: {} }],
    overrides: [{ key: 'strategy', set_by: 'a', set_at: 't', in_use: true }, { key: 'window/late', set_by: 'a', set_at: 't', in_use: false }],
  });
  assert.equal(rememberable(all), null);
  assert.deepEqual(staggeredWaves({ doc: all, remembered: { names: ['canary', 'broad'], approval: [] } }), { names: ['canary', 'broad'], source: 'remembered' });
  const rollouts = [
    { updated: '2026-03-01T00:00:00Z', waves: [{ name: 'old1' }, { name: 'old2' }] },
    { updated: '2026-03-05T00:00:00Z', waves: [{ name: 'canary' }, { name: 'early' }, { name: 'broad' }] },
    { updated: '2026-03-09T00:00:00Z', waves: [{ name: 'all' }] },
  ];
  assert.deepEqual(staggeredWaves({ doc: all, rollouts, offers: ['broad', 'zeta', 'canary'], assignments: ['alpha', 'all'] }), {
    names: ['canary', 'early', 'broad', 'alpha', 'late', 'zeta'],
    source: 'seen',
  });
  assert.deepEqual(staggeredWaves({ doc: all }), { names: ['late'], source: 'seen' });
  assert.deepEqual(staggeredWaves({ doc: readPolicyDoc({ strategy: 'all_at_once', waves: [{ name: 'all' }] }) }), { names: [], source: 'unknown' });
});

test('a policy change reply in a line', () => {
  assert.equal(describePolicyReply({ fleet: 'plant-a', strategy: 'staggered', rollouts: [], policy: DOC }), 'strategy staggered; no live rollout of the fleet');
  assert.equal(
    describePolicyReply({
      strategy: 'all_at_once',
      rollouts: [{ rollout: 'plant-a.app.1.1.0', applies: 'next_rollout', why: 'its waves are not re-shaped' }, { rollout: 'plant-a.model.2', applies: 'now' }],
    }),
    'strategy all_at_once; plant-a.app.1.1.0: next_rollout (its waves are not re-shaped); plant-a.model.2: now',
  );
  assert.equal(describePolicyReply(null), '');
  assert.equal(describePolicyReply({ rollouts: 'x' }), 'no live rollout of the fleet');
});
