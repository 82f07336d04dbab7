import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyMessage, createModel, parseTopic } from '../src/model.mjs';

const P = 'ota/v1';
const env = (component, version, channel = 'stable', scheme = 'semver') =>
  ({ manifest: { schema: 1, component, version, version_scheme: scheme, channel, created: '2026-12-01T00:00:00Z' }, signature: 'x' });
const put = (m, t, o, opts = {}) => applyMessage(m, `${P}/${t}`, typeof o === 'string' ? o : JSON.stringify(o), { prefix: P, ...opts });

test('topics: the protocol tree is recognised, anything else ignored', () => {
  assert.deepEqual(parseTopic(`${P}/devices/d1/status/app`, P), { kind: 'status', device: 'd1', component: 'app' });
  assert.deepEqual(parseTopic(`${P}/fleets/f/waves/canary/app`, P), { kind: 'wave', fleet: 'f', wave: 'canary', component: 'app' });
  assert.deepEqual(parseTopic(`${P}/fleets/f/policy`, P), { kind: 'policy', fleet: 'f' });
  assert.equal(parseTopic(`${P}/devices/d1/cmd`, P), null);
  assert.equal(parseTopic(`other/devices/d1/online`, P), null);
  assert.deepEqual(parseTopic(`${P}/devices/<img src=x>/online`, P), { kind: 'online', device: '<img src=x>' });
  assert.equal(parseTopic(`${P}/devices/a\u0000b/online`, P), null);
  assert.equal(parseTopic(`${P}/releases/<b>/stable`, P), null);
  assert.equal(parseTopic(`${P}/rollouts/a/b`, P), null);
});

test('device messages build one device record', () => {
  const m = createModel();
  put(m, 'devices/d1/online', { online: true, agent_version: '0.1.0', ts: 't' });
  put(m, 'devices/d1/inventory', { device: 'd1', platform: 'linux/arm64', labels: { site: 'a' }, components: { app: '1.0.0', model: null } });
  put(m, 'devices/d1/assignment', { fleet: 'plant-a', wave: 'canary' });
  put(m, 'devices/d1/status/app', { stage: 'failed', version: '1.1.0', seq: 3, error: { code: 'hash_mismatch', message: 'bad' } });
  const d = m.devices.get('d1');
  assert.equal(d.online, true);
  assert.deepEqual(d.components, { app: '1.0.0', model: null });
  assert.deepEqual(d.labels, { site: 'a' });
  assert.deepEqual(d.assignment, { fleet: 'plant-a', wave: 'canary' });
  assert.equal(d.status.app.stage, 'failed');
  assert.deepEqual(d.status.app.error, { code: 'hash_mismatch', message: 'bad' });
  assert.equal(m.devices.size, 1);
  put(m, 'devices/d1/online', { online: false });
  assert.equal(d.online, false);
  assert.equal(d.agentVersion, '0.1.0');
});

test('status: a repeated or older seq changes nothing; history keeps what was seen, bounded', () => {
  const m = createModel();
  put(m, 'devices/d1/status/app', { stage: 'downloading', progress: 10, seq: 5, rollout: 'r' });
  put(m, 'devices/d1/status/app', { stage: 'verifying', seq: 4, rollout: 'r' });
  put(m, 'devices/d1/status/app', { stage: 'downloading', progress: 10, seq: 5, rollout: 'r' });
  assert.equal(m.devices.get('d1').status.app.stage, 'downloading');
  assert.equal(m.devices.get('d1').history.length, 1);
  for (let i = 6; i < 100; i++) put(m, 'devices/d1/status/app', { stage: 'downloading', progress: i, seq: i, rollout: 'r' });
  assert.equal(m.devices.get('d1').history.length, 30);
  assert.equal(m.devices.get('d1').history.at(-1).progress, 99);
});

test('malformed JSON, wrong types and huge numbers never throw and are counted or neutralised', () => {
  const m = createModel();
  const bad = ['{not json', '[1,2]', '"str"', '42', 'null', '\u0000', '{"a":' + '['.repeat(5000)];
  for (const b of bad) assert.deepEqual(put(m, 'devices/d1/status/app', b), []);
  assert.equal(m.malformed, bad.length);
  put(m, 'devices/d2/status/app', '{"stage":7,"seq":1e400,"progress":"x","error":5,"version":{"a":1}}');
  const s = m.devices.get('d2').status.app;
  assert.equal(s.seq, null);
  assert.equal(s.progress, null);
  assert.equal(s.error, null);
  assert.equal(s.version, '');
  put(m, 'devices/d3/inventory', { components: 'x', labels: [1, 2] });
  assert.deepEqual(m.devices.get('d3').components, {});
  assert.deepEqual(m.devices.get('d3').labels, {});
  put(m, 'rollouts/r1', { state: 5, waves: 'x', totals: { devices: 1e400, failed: -3, succeeded: '2' } });
  const r = m.rollouts.get('r1');
  assert.equal(r.state, 'unknown');
  assert.deepEqual(r.waves, []);
  assert.equal(r.totals.devices, 0);
  assert.equal(r.totals.failed, 0);
  assert.equal(r.totals.succeeded, 0);
  put(m, 'rollouts/r2', { waves: [null, 5, { name: 'canary', devices: 1e300 }] });
  assert.equal(m.rollouts.get('r2').waves.length, 1);
  assert.equal(m.rollouts.get('r2').waves[0].devices, Number.MAX_SAFE_INTEGER);
  put(m, 'releases/app/stable', { manifest: { version: 5 } });
  assert.equal(m.releases.size, 0);
  applyMessage(m, 5, {}, { prefix: P });
  applyMessage(m, `${P}/devices/d1/online`, undefined, { prefix: P });
});

test('a device-provided string is kept as the text it is (rendering escapes it)', () => {
  const m = createModel();
  const x = '<img src=x onerror=alert(1)>';
  put(m, 'devices/d1/inventory', { labels: { [x]: x }, components: { app: x } });
  put(m, 'devices/d1/status/app', { stage: 'failed', error: { code: x, message: x } });
  assert.equal(m.devices.get('d1').labels[x], x);
  assert.equal(m.devices.get('d1').status.app.error.message, x);
});

test('an empty payload clears a retained topic', () => {
  const m = createModel();
  put(m, 'releases/app/stable', env('app', '1.0.0'));
  put(m, 'rollouts/r1', { state: 'active' });
  assert.equal(m.releases.size, 1);
  put(m, 'releases/app/stable', '');
  put(m, 'rollouts/r1', '');
  assert.equal(m.releases.size, 0);
  assert.equal(m.rollouts.size, 0);
});

test('events: live transitions toast, retained state at subscribe time does not', () => {
  const m = createModel();
  assert.deepEqual(put(m, 'rollouts/r1', { state: 'halted', reason: 'x' }, { retained: true }), []);
  assert.deepEqual(put(m, 'rollouts/r2', { state: 'active' }), []);
  assert.equal(put(m, 'rollouts/r2', { state: 'halted', reason: '2 failed' })[0].type, 'rollout_halted');
  assert.deepEqual(put(m, 'rollouts/r2', { state: 'halted', reason: '2 failed' }), []);
  assert.equal(put(m, 'rollouts/r2', { state: 'completed' })[0].type, 'rollout_completed');
  put(m, 'alerts/r2', { state: 'firing', reason: 'x' }, { retained: true });
  const ev = put(m, 'alerts/r2', { state: 'resolved', resolved_by: 'alice' });
  assert.equal(ev[0].type, 'alert_resolved');
  assert.match(ev[0].text, /alice/);
});

test('summary: the controller counts are read defensively; a bad one is counted and ignored', () => {
  const m = createModel();
  assert.deepEqual(parseTopic(`${P}/summary`, P), { kind: 'summary' });
  const counts = { up_to_date: 3, outdated: 2, updating: 1, failed: 1, offline: 0, unknown: 1, total: 8 };
  put(m, 'summary', { schema: 1, at: '2026-12-04T10:00:00Z', devices: 9, needs_update: 3, components: { app: counts },
    fleets: { plant: { devices: 9, needs_update: 3, components: { app: counts } } } });
  assert.equal(m.summary.devices, 9);
  assert.equal(m.summary.needsUpdate, 3);
  assert.deepEqual(m.summary.components.app, counts);
  assert.deepEqual(m.summary.fleets.plant.components.app, counts);
  // Wrong types, negative and huge numbers, a total that is not the sum, names outside the rule.
  put(m, 'summary', { schema: 1, devices: -4, needs_update: '7', components: { app: { up_to_date: 1e400, outdated: -1, failed: 'x', updating: 2, total: 99 },
    '<img src=x onerror=alert(1)>': counts, model: [1, 2] }, fleets: { plant: 'x', 'a/b': {}, ok: { components: null } } });
  assert.equal(m.summary.devices, 0);
  assert.equal(m.summary.needsUpdate, 0);
  assert.deepEqual(m.summary.components.app, { up_to_date: 0, outdated: 0, updating: 2, failed: 0, offline: 0, unknown: 0, total: 2 });
  assert.deepEqual(Object.keys(m.summary.components).sort(), ['app', 'model']);
  assert.equal(m.summary.components.model.total, 0);
  assert.deepEqual(Object.keys(m.summary.fleets), ['ok']);
  assert.deepEqual(m.summary.fleets.ok.components, {});
  // Another schema or not an object: counted as malformed, the summary before stays.
  const before = m.malformed;
  put(m, 'summary', { schema: 2, devices: 1 });
  put(m, 'summary', '[1,2]');
  put(m, 'summary', '{"schema":1,');
  assert.equal(m.malformed, before + 3);
  assert.deepEqual(Object.keys(m.summary.components).sort(), ['app', 'model']);
  // Cleared retained topic: no summary.
  put(m, 'summary', '');
  assert.equal(m.summary, null);
});
