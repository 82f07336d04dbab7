// The console's model: retained MQTT messages (docs/protocol.md) parsed into plain objects.
// Pure and defensive: applyMessage() never throws, whatever the topic or payload; a payload that
// is not the JSON object its topic promises is counted in model.malformed and otherwise ignored.

export const STAGES_IN_PROGRESS = ['downloading', 'verifying', 'installing', 'health_checking'];
export const STAGES_FAILED = ['failed', 'rolled_back', 'rejected'];
const STAGES = [...STAGES_IN_PROGRESS, 'succeeded', ...STAGES_FAILED];
/** A device's state per component, as the fleet counts show it (derive.mjs; the controller's summary). */
export const STATES = ['up_to_date', 'outdated', 'updating', 'failed', 'offline', 'unknown'];
const HISTORY_LIMIT = 30;
const MAX_TEXT = 4096;

export function createModel() {
  return {
    releases: new Map(), // "component/channel" -> release
    rollouts: new Map(), // rollout id -> rollout
    alerts: new Map(), // rollout id -> alert
    devices: new Map(), // device id -> device
    waves: new Map(), // "fleet/wave/component" -> wave offer
    policies: new Map(), // fleet -> the raw policy document (read by fleet-policy.mjs for the policy view)
    summary: null, // the controller's fleet summary (readSummary), or null
    malformed: 0,
    lastMalformed: '',
    rev: 0, // bumps on every accepted change
    globalRev: 0, // bumps when a change can alter every device's target (release, wave, policy)
    deviceSetRev: 0, // bumps when a device appears or disappears
    dirty: new Set(), // device ids whose derived state must be recomputed
  };
}

// ---- defensive readers -------------------------------------------------------------------------

export function str(v, max = MAX_TEXT) {
  if (typeof v === 'string') return v.length > max ? v.slice(0, max) + '…' : v;
  return '';
}
export function optStr(v, max = MAX_TEXT) {
  return typeof v === 'string' ? str(v, max) : null;
}
export function num(v) {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}
/** A count: a finite, non-negative number, else 0. */
export function count(v) {
  const n = num(v);
  return n !== null && n >= 0 ? Math.min(n, Number.MAX_SAFE_INTEGER) : 0;
}
function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
function parseObject(text) {
  try {
    const v = JSON.parse(text);
    return isObject(v) ? v : null;
  } catch {
    return null;
  }
}

// ---- topics --------------------------------------------------------------------------------------

const NAME = /^[A-Za-z0-9._-]{1,64}$/;
// Device ids outside the protocol's name rule are still shown (as text), so a misconfigured
// device is visible rather than silently missing; only control characters are refused.
// eslint-disable-next-line no-control-regex
const DEVICE = /^[^\u0000-\u001f\u007f]{1,256}$/;

/** Splits a topic under `prefix` into {kind, ...names}, or null for a topic the console ignores. */
export function parseTopic(topic, prefix) {
  if (typeof topic !== 'string' || !topic.startsWith(prefix + '/')) return null;
  const p = topic.slice(prefix.length + 1).split('/');
  if (!p.every((s, i) => (p[0] === 'devices' && i === 1 ? DEVICE : NAME).test(s))) return null;
  if (p[0] === 'releases' && p.length === 3) return { kind: 'release', component: p[1], channel: p[2] };
  if (p[0] === 'rollouts' && p.length === 2) return { kind: 'rollout', id: p[1] };
  if (p[0] === 'alerts' && p.length === 2) return { kind: 'alert', id: p[1] };
  if (p[0] === 'devices' && p.length === 3 && ['online', 'inventory', 'assignment'].includes(p[2]))
    return { kind: p[2], device: p[1] };
  if (p[0] === 'devices' && p.length === 4 && p[2] === 'status') return { kind: 'status', device: p[1], component: p[3] };
  if (p[0] === 'fleets' && p.length === 5 && p[2] === 'waves')
    return { kind: 'wave', fleet: p[1], wave: p[3], component: p[4] };
  if (p[0] === 'fleets' && p.length === 3 && p[2] === 'policy') return { kind: 'policy', fleet: p[1] };
  if (p[0] === 'summary' && p.length === 1) return { kind: 'summary' };
  return null;
}

/** The subscriptions that fill the model (all retained). */
export function subscriptions(prefix) {
  return [
    `${prefix}/summary`, // first: the counts of the whole fleet in one message, before 4 messages a device
    `${prefix}/releases/+/+`,
    `${prefix}/rollouts/+`,
    `${prefix}/alerts/+`,
    `${prefix}/devices/+/online`,
    `${prefix}/devices/+/inventory`,
    `${prefix}/devices/+/assignment`,
    `${prefix}/devices/+/status/+`,
    `${prefix}/fleets/+/waves/+/+`,
    `${prefix}/fleets/+/policy`,
  ];
}

// ---- payload readers -----------------------------------------------------------------------------

/** The parts of a signed release envelope the console shows (it does not verify signatures). */
export function readRelease(envelope) {
  const m = isObject(envelope) && isObject(envelope.manifest) ? envelope.manifest : null;
  if (!m) return null;
  const version = str(m.version, 128);
  if (!version) return null;
  const artifact = isObject(m.artifact) ? m.artifact : {};
  return {
    component: str(m.component, 64),
    version,
    scheme: str(m.version_scheme, 16) || 'semver',
    channel: str(m.channel, 64),
    created: str(m.created, 64),
    expires: str(m.expires, 64),
    size: num(artifact.size),
    rollback: m.rollback === true,
  };
}

function readError(e) {
  if (!isObject(e)) return null;
  return { code: str(e.code, 64) || 'unknown', message: str(e.message) };
}

function readWave(w) {
  if (!isObject(w)) return null;
  return {
    name: str(w.name, 64) || '?',
    state: str(w.state, 32) || 'pending',
    approval: optStr(w.approval, 32),
    devices: count(w.devices),
    succeeded: count(w.succeeded),
    already: count(w.already),
    failed: count(w.failed),
    silent: count(w.silent),
    in_progress: count(w.in_progress),
    pending: count(w.pending),
    opened_at: str(w.opened_at, 64),
    soak_until: str(w.soak_until, 64),
    success_percent: num(w.success_percent),
  };
}

const TOTAL_KEYS = ['devices', 'succeeded', 'already', 'failed', 'silent', 'in_progress', 'pending'];
function readTotals(t) {
  const out = {};
  for (const k of TOTAL_KEYS) out[k] = count(isObject(t) ? t[k] : 0);
  return out;
}

function readRollout(j, id) {
  return {
    id,
    fleet: str(j.fleet, 64),
    component: str(j.component, 64),
    version: str(j.version, 128),
    state: str(j.state, 32) || 'unknown',
    wave: str(j.wave, 64),
    reason: str(j.reason),
    created: str(j.created, 64),
    updated: str(j.updated, 64),
    waves: Array.isArray(j.waves) ? j.waves.slice(0, 256).map(readWave).filter(Boolean) : [],
    totals: readTotals(j.totals),
  };
}

function readAlert(j, id) {
  return {
    id,
    fleet: str(j.fleet, 64),
    component: str(j.component, 64),
    version: str(j.version, 128),
    wave: str(j.wave, 64),
    state: str(j.state, 32) || 'firing',
    reason: str(j.reason),
    resolved_by: str(j.resolved_by, 64),
    resolution: str(j.resolution, 32),
    ts: str(j.ts, 64),
  };
}

function readLabels(l) {
  const out = {};
  if (!isObject(l)) return out;
  let n = 0;
  for (const [k, v] of Object.entries(l)) {
    if (++n > 64) break;
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') out[str(k, 128)] = str(String(v), 256);
  }
  return out;
}

function readComponents(c) {
  const out = {};
  if (!isObject(c)) return out;
  let n = 0;
  for (const [k, v] of Object.entries(c)) {
    if (++n > 256 || !NAME.test(k)) continue;
    out[k] = typeof v === 'string' && v.length > 0 ? str(v, 128) : null;
  }
  return out;
}

function readStatus(j, component) {
  const stage = STAGES.includes(j.stage) ? j.stage : str(j.stage, 32) || 'unknown';
  return {
    component,
    version: str(j.version, 128),
    rollout: str(j.rollout, 128),
    stage,
    progress: num(j.progress),
    seq: num(j.seq),
    ts: str(j.ts, 64),
    error: readError(j.error),
  };
}

/** Counts per state of one component; the total is their sum (not what the message claims). */
function readStateCounts(c) {
  const out = {};
  let total = 0;
  for (const s of STATES) total += out[s] = count(isObject(c) ? c[s] : 0);
  out.total = total;
  return out;
}

function readGroup(g) {
  const components = {};
  let n = 0;
  if (isObject(g.components))
    for (const [c, v] of Object.entries(g.components)) if (++n <= 256 && NAME.test(c)) components[c] = readStateCounts(v);
  return { devices: count(g.devices), needsUpdate: count(g.needs_update), components };
}

/**
 * The controller's fleet summary (docs/protocol.md, "Fleet summary"): {at, devices, needsUpdate,
 * components: {c: {state: n, total}}, fleets: {fleet: {devices, needsUpdate, components}}}, or
 * null when it is not schema 1.
 */
export function readSummary(j) {
  if (!isObject(j) || j.schema !== 1) return null;
  const fleets = {};
  let n = 0;
  if (isObject(j.fleets))
    for (const [f, g] of Object.entries(j.fleets)) if (++n <= 1024 && NAME.test(f) && isObject(g)) fleets[f] = readGroup(g);
  return { at: str(j.at, 64), ...readGroup(j), fleets };
}

// ---- apply ----------------------------------------------------------------------------------------

export function newDevice(id) {
  return {
    id,
    online: null, // null: no online message seen
    agentVersion: '',
    onlineTs: '',
    platform: '',
    labels: {},
    components: {}, // component -> installed version (null: unknown)
    inventoryTs: '',
    status: {}, // component -> last status
    assignment: null, // {fleet, wave}
    history: [], // status messages seen, newest last (bounded)
  };
}

function device(model, id) {
  let d = model.devices.get(id);
  if (!d) {
    d = newDevice(id);
    model.devices.set(id, d);
    model.deviceSetRev++;
  }
  model.dirty.add(id);
  return d;
}

function rejectPayload(model, topic, why) {
  model.malformed++;
  model.lastMalformed = `${str(topic, 256)}: ${why}`;
  return [];
}

/**
 * Applies one message. `payload` is the text (UTF-8 decoded); an empty payload clears a retained
 * topic. `retained` is the MQTT retain flag as delivered (true for the retained state sent at
 * subscribe time). Returns events for toasts: [{type, id, text}]; only for live messages.
 */
export function applyMessage(model, topic, payload, { retained = false, prefix = 'ota/v1' } = {}) {
  try {
    return applyUnsafe(model, topic, payload, retained, prefix);
  } catch (e) {
    return rejectPayload(model, topic, `internal: ${e && e.message}`);
  }
}

function applyUnsafe(model, topic, payload, retained, prefix) {
  const t = parseTopic(topic, prefix);
  if (!t) return [];
  const text = typeof payload === 'string' ? payload : '';
  const empty = text.length === 0;
  const j = empty ? null : parseObject(text);
  if (!empty && !j) return rejectPayload(model, topic, 'not a JSON object');
  const events = [];
  model.rev++;
  switch (t.kind) {
    case 'release': {
      const key = `${t.component}/${t.channel}`;
      if (empty) model.releases.delete(key);
      else {
        const r = readRelease(j);
        if (!r) return rejectPayload(model, topic, 'no manifest.version');
        model.releases.set(key, { ...r, component: t.component, channel: t.channel });
      }
      model.globalRev++;
      break;
    }
    case 'wave': {
      const key = `${t.fleet}/${t.wave}/${t.component}`;
      if (empty) model.waves.delete(key);
      else
        model.waves.set(key, {
          fleet: t.fleet,
          wave: t.wave,
          component: t.component,
          rollout: str(j.rollout, 128),
          state: str(j.state, 32),
          release: readRelease(j.release),
        });
      model.globalRev++;
      break;
    }
    case 'summary': {
      if (empty) model.summary = null;
      else {
        const sm = readSummary(j);
        if (!sm) return rejectPayload(model, topic, 'schema: expected 1');
        model.summary = sm;
      }
      break;
    }
    case 'policy': {
      if (empty) model.policies.delete(t.fleet);
      else model.policies.set(t.fleet, j);
      model.globalRev++;
      break;
    }
    case 'rollout': {
      const prev = model.rollouts.get(t.id);
      if (empty) {
        model.rollouts.delete(t.id);
        break;
      }
      const r = readRollout(j, t.id);
      model.rollouts.set(t.id, r);
      if (!retained && (!prev || prev.state !== r.state)) {
        if (r.state === 'completed') events.push({ type: 'rollout_completed', id: t.id, text: `rollout ${t.id} completed` });
        if (r.state === 'halted')
          events.push({ type: 'rollout_halted', id: t.id, text: `rollout ${t.id} halted${r.reason ? ': ' + r.reason : ''}` });
        if (r.state === 'aborted') events.push({ type: 'rollout_aborted', id: t.id, text: `rollout ${t.id} aborted` });
      }
      break;
    }
    case 'alert': {
      const prev = model.alerts.get(t.id);
      if (empty) {
        model.alerts.delete(t.id);
        break;
      }
      const a = readAlert(j, t.id);
      model.alerts.set(t.id, a);
      if (!retained && a.state === 'resolved' && (!prev || prev.state !== 'resolved'))
        events.push({
          type: 'alert_resolved',
          id: t.id,
          text: `alert on ${t.id} resolved${a.resolved_by ? ' by ' + a.resolved_by : ''}${a.resolution ? ' (' + a.resolution + ')' : ''}`,
        });
      break;
    }
    case 'online': {
      const d = device(model, t.device);
      if (empty) {
        d.online = null;
        break;
      }
      d.online = j.online === true;
      if (d.online) {
        d.agentVersion = str(j.agent_version, 64) || d.agentVersion;
        d.onlineTs = str(j.ts, 64);
      }
      break;
    }
    case 'inventory': {
      const d = device(model, t.device);
      if (empty) {
        d.components = {};
        d.labels = {};
        break;
      }
      d.agentVersion = str(j.agent_version, 64) || d.agentVersion;
      d.platform = str(j.platform, 64);
      d.labels = readLabels(j.labels);
      d.components = readComponents(j.components);
      d.inventoryTs = str(j.ts, 64);
      break;
    }
    case 'assignment': {
      const d = device(model, t.device);
      d.assignment = empty ? null : { fleet: str(j.fleet, 64), wave: str(j.wave, 64) };
      break;
    }
    case 'status': {
      const d = device(model, t.device);
      if (empty) {
        delete d.status[t.component];
        break;
      }
      const s = readStatus(j, t.component);
      const prev = d.status[t.component];
      // seq increases per device: an older or repeated report (QoS 1 resend) changes nothing
      if (prev && prev.seq !== null && s.seq !== null && s.seq <= prev.seq && prev.rollout === s.rollout) break;
      d.status[t.component] = s;
      d.history.push(s);
      if (d.history.length > HISTORY_LIMIT) d.history.splice(0, d.history.length - HISTORY_LIMIT);
      break;
    }
  }
  return events;
}
