// What the views show, derived from the model: each device's state per component, the fleet
// counts, the badges. Pure. Incremental: Derived.update() recomputes only the devices the model
// marked dirty, unless a release, wave offer or policy changed (then every device).
//
// The up-to-date rule (documented in web-console/README.md): a device's component is "up to
// date" when its installed version (inventory) equals or is newer than the target, in the target
// release's version scheme. The target, in order:
//   1. the fleet's policy (fleets/<fleet>/policy) names a channel for the component
//      (`channels.<component>` or `channel`): the release retained on releases/<component>/<channel>;
//   2. else the release offered on the device's assigned wave topic
//      (fleets/<fleet>/waves/<wave>/<component>, from devices/<id>/assignment);
//   3. else the newest release of the component over all channels (versions that do not order
//      against the others are skipped).
// No target, no installed version, or versions that do not order: "unknown".

import { compareVersions } from './versions.mjs';
import { STAGES_FAILED, STAGES_IN_PROGRESS, STATES } from './model.mjs';

export { STATES };
export const STATE_LABELS = {
  up_to_date: 'up to date',
  outdated: 'outdated',
  updating: 'updating',
  failed: 'failed',
  offline: 'offline',
  unknown: 'unknown',
};
// worst first: the device's badge is its worst component state
const SEVERITY = ['failed', 'outdated', 'updating', 'offline', 'unknown', 'up_to_date'];

/** The channel a fleet's policy names for a component, or '' (policy format: fleet-policy branch). */
export function policyChannel(policy, component) {
  if (!policy || typeof policy !== 'object') return '';
  const ch = policy.channels;
  if (ch && typeof ch === 'object' && typeof ch[component] === 'string') return ch[component];
  return typeof policy.channel === 'string' ? policy.channel : '';
}

/** The newest release of each component over all channels: Map component -> release. */
export function newestReleases(model) {
  const out = new Map();
  for (const r of model.releases.values()) {
    const cur = out.get(r.component);
    if (!cur) out.set(r.component, r);
    else if (cur.scheme === r.scheme && compareVersions(r.version, cur.version, r.scheme) === 1) out.set(r.component, r);
  }
  return out;
}

/** The release a device's component should run: {version, scheme, channel, source} or null. */
export function targetFor(model, d, component, newest = newestReleases(model)) {
  const fleet = d.assignment && d.assignment.fleet;
  if (fleet) {
    const ch = policyChannel(model.policies.get(fleet), component);
    const r = ch && model.releases.get(`${component}/${ch}`);
    if (r) return { version: r.version, scheme: r.scheme, channel: ch, source: 'policy' };
    const w = d.assignment.wave && model.waves.get(`${fleet}/${d.assignment.wave}/${component}`);
    if (w && w.release)
      return { version: w.release.version, scheme: w.release.scheme, channel: w.release.channel, source: 'wave' };
  }
  const r = newest.get(component);
  return r ? { version: r.version, scheme: r.scheme, channel: r.channel, source: 'newest' } : null;
}

/** The components a device is known to have: its inventory's and those it reported on. */
export function deviceComponents(d) {
  const set = new Set(Object.keys(d.components));
  for (const c of Object.keys(d.status)) set.add(c);
  return [...set].sort();
}

/**
 * One component's state on one device: {state, installed, target, cmp}.
 * Order: offline (last will seen) > updating (a stage in progress) > up to date / outdated by the
 * rule above > failed (last report failed and the target is not installed) > unknown.
 */
export function componentState(model, d, component, newest) {
  const installed = Object.hasOwn(d.components, component) ? d.components[component] : null;
  const target = targetFor(model, d, component, newest);
  const cmp = installed && target ? compareVersions(installed, target.version, target.scheme) : null;
  const s = d.status[component];
  let state;
  if (d.online === false) state = 'offline';
  else if (s && STAGES_IN_PROGRESS.includes(s.stage)) state = 'updating';
  else if (cmp !== null && cmp >= 0) state = 'up_to_date';
  else if (s && STAGES_FAILED.includes(s.stage)) state = 'failed';
  else if (cmp !== null) state = 'outdated';
  else state = 'unknown';
  return { state, installed, target, cmp, needsUpdate: cmp !== null && cmp < 0 };
}

/** Derives one device: {states: {component: componentState}, worst, needsUpdate}. */
export function deriveDevice(model, d, newest) {
  const states = {};
  let worst = 'unknown';
  let rank = SEVERITY.length;
  let needsUpdate = false;
  for (const c of deviceComponents(d)) {
    const cs = componentState(model, d, c, newest);
    states[c] = cs;
    const i = SEVERITY.indexOf(cs.state);
    if (i < rank) {
      rank = i;
      worst = cs.state;
    }
    needsUpdate = needsUpdate || cs.needsUpdate;
  }
  return { states, worst, needsUpdate };
}

export function emptyCounts() {
  return Object.fromEntries([...STATES, 'total'].map((s) => [s, 0]));
}

/** Counts per component and state over derived devices; `components` get a row even when empty. */
export function countStates(derivedDevices, components = []) {
  const counts = {};
  for (const dd of derivedDevices) {
    for (const [c, cs] of Object.entries(dd.states)) {
      const k = counts[c] || (counts[c] = emptyCounts());
      k[cs.state]++;
      k.total++;
    }
  }
  for (const c of components) if (!counts[c]) counts[c] = emptyCounts();
  return counts;
}

/** The fleet counts of one fleet (devices assigned to it). */
export function fleetCounts(model, derived, fleet) {
  const list = [];
  for (const [id, dd] of derived.byDevice) {
    const d = model.devices.get(id);
    if (d && d.assignment && d.assignment.fleet === fleet) list.push(dd);
  }
  return countStates(list, derived.newest.keys());
}

/**
 * The controller's counts (model.summary, from <prefix>/summary) in the shape of countStates(),
 * for every device or one fleet; null when there is no summary (or none for that fleet). The
 * views show them while the page's own model is still loading (app.loading).
 */
export function summaryCounts(summary, fleet = '') {
  if (!summary) return null;
  const g = fleet ? summary.fleets[fleet] : summary;
  return g ? g.components : null;
}

export class Derived {
  constructor() {
    this.byDevice = new Map();
    this.globalRev = -1;
    this.rev = -1;
    this.counts = {}; // component -> {state: n, total}
    this.needsUpdate = 0;
    this.firingAlerts = 0;
    this.newest = new Map();
  }

  /** Brings the derived state up to the model; cheap when little changed. */
  update(model) {
    if (model.rev === this.rev) return this;
    this.rev = model.rev;
    if (model.globalRev !== this.globalRev) {
      this.globalRev = model.globalRev;
      this.newest = newestReleases(model);
      this.byDevice.clear();
      for (const d of model.devices.values()) this.byDevice.set(d.id, deriveDevice(model, d, this.newest));
    } else {
      for (const id of model.dirty) {
        const d = model.devices.get(id);
        if (d) this.byDevice.set(id, deriveDevice(model, d, this.newest));
        else this.byDevice.delete(id);
      }
    }
    model.dirty.clear();
    this.counts = countStates(this.byDevice.values(), this.newest.keys());
    let needs = 0;
    for (const dd of this.byDevice.values()) if (dd.needsUpdate) needs++;
    this.needsUpdate = needs;
    let firing = 0;
    for (const a of model.alerts.values()) if (a.state === 'firing') firing++;
    this.firingAlerts = firing;
    return this;
  }
}

/** Finished rollouts with their success rate ((succeeded + already) / devices), newest first. */
export function finishedRollouts(model) {
  const done = ['completed', 'aborted', 'superseded'];
  return [...model.rollouts.values()]
    .filter((r) => done.includes(r.state))
    .map((r) => {
      const t = r.totals;
      const rate = t.devices > 0 ? (100 * (t.succeeded + t.already)) / t.devices : null;
      return { ...r, successRate: rate };
    })
    .sort((a, b) => (a.updated < b.updated ? 1 : a.updated > b.updated ? -1 : 0));
}

/**
 * Filters device ids. f: {outdated, failed, offline, state (one of STATES), label ("key=value" or "key"), fleet, search,
 * component ('' = any)}. `ids` is the sorted id list.
 */
export function filterDevices(model, derived, ids, f) {
  const search = (f.search || '').trim().toLowerCase();
  let lk = '';
  let lv = null;
  if (f.label) {
    const eq = f.label.indexOf('=');
    lk = eq >= 0 ? f.label.slice(0, eq).trim() : f.label.trim();
    lv = eq >= 0 ? f.label.slice(eq + 1).trim() : null;
  }
  const out = [];
  for (const id of ids) {
    const d = model.devices.get(id);
    const dd = derived.byDevice.get(id);
    if (!d || !dd) continue;
    if (f.fleet && (!d.assignment || d.assignment.fleet !== f.fleet)) continue;
    if (lk && (!Object.hasOwn(d.labels, lk) || (lv !== null && d.labels[lk] !== lv))) continue;
    const states = f.component ? (dd.states[f.component] ? [dd.states[f.component]] : []) : Object.values(dd.states);
    if (f.component && states.length === 0) continue;
    if (f.outdated && !states.some((s) => s.needsUpdate)) continue;
    if (f.failed && !states.some((s) => s.state === 'failed')) continue;
    if (f.offline && d.online !== false) continue;
    if (f.state && !states.some((s) => s.state === f.state)) continue;
    if (search) {
      const hay = [id, d.platform, d.assignment ? d.assignment.fleet : '', ...Object.entries(d.labels).map(([k, v]) => `${k}=${v}`)]
        .join(' ')
        .toLowerCase();
      if (!hay.includes(search)) continue;
    }
    out.push(id);
  }
  return out;
}
