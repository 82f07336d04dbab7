import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyMessage, createModel } from '../src/model.mjs';
import { Derived, filterDevices, finishedRollouts, summaryCounts, targetFor } from '../src/derive.mjs';

const P = 'ota/v1';
const env = (component, version, channel = 'stable', scheme = 'semver') =>
  ({ manifest: { schema: 1, component, version, version_scheme: scheme, channel }, signature: 'x' });
const put = (m, t, o, opts = {}) => applyMessage(m, `${P}/${t}`, typeof o === 'string' ? o : JSON.stringify(o), { prefix: P, ...opts });

function fleet() {
  const m = createModel();
  put(m, 'releases/app/stable', env('app', '1.1.0'));
  put(m, 'releases/app/beta', env('app', '1.2.0-rc.1', 'beta'));
  const dev = (id, version, extra = {}) => {
    put(m, `devices/${id}/online`, { online: extra.online ?? true });
    put(m, `devices/${id}/inventory`, { components: { app: version }, labels: extra.labels || {} });
    if (extra.assignment) put(m, `devices/${id}/assignment`, extra.assignment);
    if (extra.stage) put(m, `devices/${id}/status/app`, { stage: extra.stage, version: '1.1.0', seq: 1 });
  };
  dev('up', '1.1.0');
  dev('newer', '1.3.0');
  dev('old', '1.0.0', { labels: { site: 'north' } });
  dev('busy', '1.0.0', { stage: 'downloading' });
  dev('broken', '1.0.0', { stage: 'failed' });
  dev('failed-but-current', '1.2.0-rc.1', { stage: 'rejected' });
  dev('gone', '1.0.0', { online: false });
  dev('nover', null);
  dev('garbage', 'not-a-version');
  return m;
}

test('fleet counts: each device in exactly one state per component', () => {
  const m = fleet();
  const d = new Derived().update(m);
  // no assignment: the target is the newest release over all channels, 1.2.0-rc.1 (beta)
  assert.deepEqual(d.counts.app, { up_to_date: 2, outdated: 2, updating: 1, failed: 1, offline: 1, unknown: 2, total: 9 });
  assert.equal(d.byDevice.get('up').states.app.state, 'outdated');
});

test('the wave a device is assigned to sets its target, before the newest release', () => {
  const m = fleet();
  put(m, 'fleets/plant-a/waves/canary/app', { rollout: 'r', state: 'open', release: env('app', '1.1.0') });
  for (const id of ['up', 'old', 'busy', 'broken', 'gone', 'nover', 'garbage', 'newer', 'failed-but-current'])
    put(m, `devices/${id}/assignment`, { fleet: 'plant-a', wave: 'canary' });
  const d = new Derived().update(m);
  assert.deepEqual(d.counts.app, { up_to_date: 3, outdated: 1, updating: 1, failed: 1, offline: 1, unknown: 2, total: 9 });
  assert.equal(targetFor(m, m.devices.get('up'), 'app').source, 'wave');
  assert.equal(d.needsUpdate, 4); // old, busy, broken, gone: installed older than the target
});

test("the fleet's policy channel wins over the wave offer", () => {
  const m = fleet();
  put(m, 'devices/up/assignment', { fleet: 'plant-a', wave: 'canary' });
  put(m, 'fleets/plant-a/waves/canary/app', { rollout: 'r', state: 'open', release: env('app', '1.0.0') });
  assert.equal(new Derived().update(m).byDevice.get('up').states.app.state, 'up_to_date');
  put(m, 'fleets/plant-a/policy', { channels: { app: 'beta' } });
  const t = targetFor(m, m.devices.get('up'), 'app');
  assert.deepEqual([t.version, t.source], ['1.2.0-rc.1', 'policy']);
});

test('incremental update: a new status recomputes that device; a new release every device', () => {
  const m = fleet();
  const d = new Derived().update(m);
  put(m, 'devices/old/status/app', { stage: 'installing', seq: 9 });
  d.update(m);
  assert.equal(d.byDevice.get('old').states.app.state, 'updating');
  assert.equal(d.counts.app.updating, 2);
  put(m, 'releases/app/beta', '');
  d.update(m);
  assert.equal(d.byDevice.get('up').states.app.state, 'up_to_date'); // stable 1.1.0 is the newest now
});

test('filters: outdated, failed, offline, label, fleet, search', () => {
  const m = fleet();
  put(m, 'devices/old/assignment', { fleet: 'plant-b', wave: 'w' });
  const d = new Derived().update(m);
  const ids = [...m.devices.keys()].sort();
  const f = (x) => filterDevices(m, d, ids, x);
  assert.deepEqual(f({ failed: true }), ['broken']);
  assert.deepEqual(f({ offline: true }), ['gone']);
  assert.deepEqual(f({ label: 'site=north' }), ['old']);
  assert.deepEqual(f({ label: 'site' }), ['old']);
  assert.deepEqual(f({ fleet: 'plant-b' }), ['old']);
  assert.deepEqual(f({ search: 'BUS' }), ['busy']);
  assert.deepEqual(f({ outdated: true }), ['broken', 'busy', 'gone', 'old', 'up']);
  assert.deepEqual(f({ component: 'app', state: 'unknown' }), ['garbage', 'nover']);
});

test('finished rollouts carry their success rate', () => {
  const m = createModel();
  put(m, 'rollouts/a', { state: 'completed', updated: '2', totals: { devices: 8, succeeded: 5, already: 1, failed: 2 } });
  put(m, 'rollouts/b', { state: 'active', totals: { devices: 8 } });
  put(m, 'rollouts/c', { state: 'aborted', updated: '1', totals: { devices: 0 } });
  const f = finishedRollouts(m);
  assert.deepEqual(f.map((r) => [r.id, r.successRate]), [['a', 75], ['c', null]]);
});

test('10,000 devices, 40,000 messages: the model and counts are built without error', () => {
  const m = createModel();
  put(m, 'releases/app/stable', env('app', '1.1.0'));
  for (let i = 0; i < 10000; i++) {
    const id = `device-${i}`;
    put(m, `devices/${id}/online`, { online: true }, { retained: true });
    put(m, `devices/${id}/inventory`, { components: { app: i % 2 ? '1.1.0' : '1.0.0' } }, { retained: true });
    put(m, `devices/${id}/assignment`, { fleet: 'f', wave: 'w' }, { retained: true });
    put(m, `devices/${id}/status/app`, { stage: 'succeeded', seq: 1 }, { retained: true });
  }
  const d = new Derived().update(m);
  assert.equal(d.counts.app.up_to_date, 5000);
  assert.equal(d.counts.app.outdated, 5000);
  assert.equal(d.needsUpdate, 5000);
});

test('counts of one fleet take only the devices assigned to it', async () => {
  const { fleetCounts } = await import('../src/derive.mjs');
  const m = fleet();
  put(m, 'devices/old/assignment', { fleet: 'plant-b', wave: 'w' });
  put(m, 'devices/up/assignment', { fleet: 'plant-b', wave: 'w' });
  const d = new Derived().update(m);
  const c = fleetCounts(m, d, 'plant-b');
  assert.equal(c.app.total, 2);
  assert.equal(c.app.outdated, 2);
  assert.equal(fleetCounts(m, d, 'nowhere').app.total, 0);
});

// The fleet of tests/data/fleet-counts.json, which the controller's summary counts too
// (tests/controller/summary_test.cpp): the page and the summary agree on every case in it.
test('the shared cases count as the controller counts them', async () => {
  const { readFile } = await import('node:fs/promises');
  const cases = JSON.parse(await readFile(new URL('../../tests/data/fleet-counts.json', import.meta.url), 'utf8'));
  const m = createModel();
  put(m, 'fleets/plant/policy', { fleet: 'plant', channel: 'stable' });
  for (const r of cases.releases) put(m, `releases/${r.component}/${r.channel}`, env(r.component, r.version, r.channel, r.scheme));
  for (const d of cases.devices) {
    put(m, `devices/${d.id}/online`, { online: d.online ?? true });
    put(m, `devices/${d.id}/inventory`, { components: d.components, labels: {} });
    put(m, `devices/${d.id}/assignment`, { fleet: 'plant', wave: 'broad' });
    for (const [c, stage] of Object.entries(d.stages || {})) put(m, `devices/${d.id}/status/${c}`, { stage, seq: 1 });
  }
  const derived = new Derived().update(m);
  assert.equal(derived.byDevice.size, cases.expected.devices);
  assert.equal(derived.needsUpdate, cases.expected.needs_update);
  assert.deepEqual(derived.counts, cases.expected.components);
});

test('summaryCounts: the controller counts for every device or one fleet, null without them', () => {
  const m = createModel();
  assert.equal(summaryCounts(m.summary), null);
  const app = { up_to_date: 1, outdated: 0, updating: 0, failed: 0, offline: 0, unknown: 0, total: 1 };
  put(m, 'summary', { schema: 1, devices: 1, components: { app }, fleets: { plant: { devices: 1, components: { app } } } });
  assert.deepEqual(summaryCounts(m.summary), { app });
  assert.deepEqual(summaryCounts(m.summary, 'plant'), { app });
  assert.equal(summaryCounts(m.summary, 'other'), null);
});
