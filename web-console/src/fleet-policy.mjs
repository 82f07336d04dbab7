// Fleet policy (docs/protocol.md, "Fleet policy"): the retained fleets/<fleet>/policy document read
// defensively, its values in words (windows, soak, thresholds), and the control requests of the
// schedules and strategy forms built from form values. Pure: no DOM, no session; the controller
// stays the judge of every request (these checks only spare a round trip for plain typos).

import { num, optStr, str } from './model.mjs';

/** Week days in the page's order (the controller accepts them in any order). */
export const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
export const STRATEGIES = ['staggered', 'all_at_once'];
/** The one wave of the all_at_once strategy. */
export const ALL_WAVE = 'all';

const MAX_WAVES = 256;

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

// ---- reading the document -----------------------------------------------------------------------

function readProvenance(o) {
  if (!isObject(o)) return null;
  return { set_by: str(o.set_by, 128), set_at: str(o.set_at, 64) };
}

/** A window as the controller writes it ({days, start, end}), or null (none / not an object). */
export function readWindow(w) {
  if (!isObject(w)) return null;
  const days = Array.isArray(w.days) ? w.days.slice(0, 14).filter((d) => typeof d === 'string').map((d) => str(d, 16)) : [];
  return { days, start: str(w.start, 16), end: str(w.end, 16) };
}

function readWavePolicy(p) {
  const o = isObject(p) ? p : {};
  return {
    success_percent: num(o.success_percent),
    max_failures: num(o.max_failures),
    max_failure_percent: num(o.max_failure_percent),
    min_finished: num(o.min_finished),
    soak_s: num(o.soak_s),
    device_timeout_s: num(o.device_timeout_s),
    approval: o.approval === true,
    window: readWindow(o.window),
  };
}

/** waves[].overrides: {field: {set_by, set_at, value?}}; `removed` when a window override is null. */
function readWaveOverrides(o) {
  const out = [];
  if (!isObject(o)) return out;
  for (const [field, v] of Object.entries(o).slice(0, 16)) {
    const p = readProvenance(v);
    if (!p) continue;
    out.push({ field: str(field, 64), ...p, removed: field === 'window' && 'value' in v && v.value === null });
  }
  return out;
}

/**
 * The policy document of one fleet, every field read with a default: {fleet, channel, strategy,
 * strategySet ({set_by, set_at} or null: from the config), waves: [{name, select, policy,
 * overrides}], components: [{component, waves: [{wave, policy}]}], overrides: [{key, set_by,
 * set_at, in_use}]}.
 */
export function readPolicyDoc(j, fleet = '') {
  const d = isObject(j) ? j : {};
  const waves = (Array.isArray(d.waves) ? d.waves.slice(0, MAX_WAVES) : []).filter(isObject).map((w) => ({
    name: str(w.name, 64) || '?',
    select: str(w.select, 512),
    policy: readWavePolicy(w.policy),
    overrides: readWaveOverrides(w.overrides),
  }));
  const components = [];
  if (isObject(d.components))
    for (const [c, list] of Object.entries(d.components).slice(0, 64)) {
      if (!Array.isArray(list)) continue;
      components.push({
        component: str(c, 64),
        waves: list.slice(0, MAX_WAVES).filter(isObject).map((x) => ({ wave: str(x.wave, 64) || '?', policy: readWavePolicy(x.policy) })),
      });
    }
  const overrides = (Array.isArray(d.overrides) ? d.overrides.slice(0, 512) : []).filter(isObject).map((o) => ({
    key: str(o.key, 128),
    set_by: str(o.set_by, 128),
    set_at: str(o.set_at, 64),
    in_use: o.in_use !== false,
  }));
  const strategy = optStr(d.strategy, 32);
  return {
    fleet: str(d.fleet, 64) || fleet,
    channel: str(d.channel, 64),
    strategy: strategy || 'staggered',
    strategySet: readProvenance(d.strategy_set),
    waves,
    components,
    overrides,
  };
}

// ---- in words ----------------------------------------------------------------------------------------

/** Seconds in words: 0 -> "0 s", 600 -> "10 min", 5400 -> "1 h 30 min", 90061 -> "1 d 1 h 1 min 1 s". */
export function fmtDuration(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) return '—';
  let s = Math.round(seconds);
  if (s === 0) return '0 s';
  const parts = [];
  for (const [unit, n] of [['d', 86400], ['h', 3600], ['min', 60], ['s', 1]]) {
    const q = Math.floor(s / n);
    if (q > 0) parts.push(`${q} ${unit}`);
    s -= q * n;
  }
  return parts.join(' ');
}

/** 100 -> "100 %", 99.5 -> "99.5 %", null -> "—". */
export function fmtPercent(p) {
  if (typeof p !== 'number' || !Number.isFinite(p)) return '—';
  return `${Number(p.toFixed(2))} %`;
}

/** max_failures / max_failure_percent: "1", "10 %", "1 or 10 %", or "no limit" when neither is set. */
export function fmtFailureLimit(policy) {
  const parts = [];
  if (policy.max_failures !== null) parts.push(String(policy.max_failures));
  if (policy.max_failure_percent !== null) parts.push(fmtPercent(policy.max_failure_percent));
  return parts.length ? parts.join(' or ') : 'no limit';
}

/** A window in words: "sat, sun 22:00–04:00 UTC (ends the next day)", "every day 01:00–03:00 UTC", "none". */
export function fmtWindow(w) {
  if (!w) return 'none';
  const days = w.days.length ? w.days.join(', ') : 'every day';
  if (w.start === w.end) return `${days} all day (UTC)`;
  const wraps = w.start > w.end; // HH:MM strings order as times
  return `${days} ${w.start}–${w.end} UTC${wraps ? ' (ends the next day)' : ''}`;
}

/** Who set an override and when: "alice, 2026-03-10 12:00:00 UTC". */
export function fmtProvenance(p) {
  if (!p) return '';
  const at = p.set_at ? p.set_at.replace('T', ' ').replace('Z', ' UTC') : '';
  return [p.set_by || '?', at].filter(Boolean).join(', ');
}

// ---- requests from form values ----------------------------------------------------------------------

/** Minutes after midnight for "HH:MM" (00:00..24:00, as the controller's window reader), else null. */
export function parseHHMM(t) {
  if (typeof t !== 'string' || !/^[0-9]{2}:[0-9]{2}$/.test(t)) return null;
  const h = Number(t.slice(0, 2));
  const m = Number(t.slice(3));
  if (h > 24 || m > 59 || (h === 24 && m !== 0)) return null;
  return h * 60 + m;
}

/**
 * The fields of a window_set request from the form: {ok: true, fields: {fleet, wave, window}} or
 * {ok: false, message}. `days` (any iterable of day names) is sent in mon..sun order and left out
 * when empty (every day).
 */
export function windowSetRequest(fleet, wave, { days = [], start = '', end = '' } = {}) {
  const s = String(start).trim();
  const e = String(end).trim();
  if (parseHHMM(s) === null) return { ok: false, message: `start: expected HH:MM (UTC, 00:00 to 24:00), got "${s}"` };
  if (parseHHMM(e) === null) return { ok: false, message: `end: expected HH:MM (UTC, 00:00 to 24:00), got "${e}"` };
  const chosen = new Set(days);
  const window = {};
  const list = DAYS.filter((d) => chosen.has(d));
  if (list.length) window.days = list;
  window.start = s;
  window.end = e;
  return { ok: true, fields: { fleet, wave, window } };
}

export function windowDeleteRequest(fleet, wave) {
  return { fleet, wave };
}

/**
 * The fields of a strategy_set request: `approval` null leaves the list out (the config file's
 * approval applies); else the names of `waves` that are in `approval`, in wave order ([] = none).
 */
export function strategyRequest(fleet, strategy, approval, waves) {
  if (!STRATEGIES.includes(strategy)) return { ok: false, message: `strategy: expected staggered or all_at_once, got "${strategy}"` };
  const fields = { fleet, strategy };
  if (approval) {
    const chosen = new Set(approval);
    fields.approval = waves.filter((w) => chosen.has(w));
  }
  return { ok: true, fields };
}

export function resetRequest(fleet) {
  return { fleet };
}

// ---- the staggered waves when the document does not list them -------------------------------------------

/**
 * The names of the config's (staggered) waves of a fleet, and where they come from. The policy
 * document lists them only while the strategy is staggered; under all_at_once it lists the one
 * wave `all`, and its `components` follow the same layout, so they do not help. In order of trust:
 *   1. `doc`: the document itself, when staggered (names and order exact);
 *   2. `remembered`: the waves of a staggered document of this fleet seen earlier by this page;
 *   3. what the retained state names: the waves of the newest staggered rollout of the fleet
 *      (in order), then, sorted, the wave offers (an all_at_once rollout's offer goes out on the
 *      topic of every config wave), device assignments and window overrides `window/<wave>` of
 *      the document. These may hold a wave the config since dropped; the controller then refuses
 *      the approval list naming it (request_invalid), which the reply area shows.
 * `all` is never a staggered wave (unless the document itself says so).
 * Returns {names, source: 'policy' | 'remembered' | 'seen' | 'unknown'}.
 */
export function staggeredWaves({ doc = null, remembered = null, rollouts = [], offers = [], assignments = [] } = {}) {
  if (doc && doc.strategy === 'staggered' && doc.waves.length) return { names: doc.waves.map((w) => w.name), source: 'policy' };
  if (remembered && remembered.names.length) return { names: [...remembered.names], source: 'remembered' };
  const names = [];
  const add = (n) => {
    if (typeof n === 'string' && n && n !== ALL_WAVE && !names.includes(n)) names.push(n);
  };
  const staggered = rollouts
    .filter((r) => Array.isArray(r.waves) && r.waves.length && !(r.waves.length === 1 && r.waves[0].name === ALL_WAVE))
    .sort((a, b) => (a.updated < b.updated ? 1 : a.updated > b.updated ? -1 : 0));
  if (staggered.length) for (const w of staggered[0].waves) add(w.name);
  const rest = new Set(offers);
  for (const a of assignments) rest.add(a);
  if (doc) for (const o of doc.overrides) if (o.key.startsWith('window/')) rest.add(o.key.slice('window/'.length));
  for (const n of [...rest].sort()) add(n);
  return { names, source: names.length ? 'seen' : 'unknown' };
}

/** What to keep of a staggered document for later (when the fleet is switched to all_at_once). */
export function rememberable(doc) {
  if (!doc || doc.strategy !== 'staggered' || !doc.waves.length) return null;
  return { names: doc.waves.map((w) => w.name), approval: doc.waves.filter((w) => w.policy.approval).map((w) => w.name) };
}

// ---- the controller's reply ---------------------------------------------------------------------------

/**
 * A policy change's reply in a line: "strategy staggered; plant-a.app.1.1.0: now (waves that have
 * not opened take the change: early)". The new document itself comes on the retained topic.
 */
export function describePolicyReply(result) {
  if (!isObject(result)) return '';
  const parts = [];
  const strategy = optStr(result.strategy, 32);
  if (strategy) parts.push(`strategy ${strategy}`);
  const rollouts = Array.isArray(result.rollouts) ? result.rollouts.filter(isObject) : [];
  if (!rollouts.length) parts.push('no live rollout of the fleet');
  for (const r of rollouts.slice(0, 10)) {
    const why = str(r.why, 512);
    parts.push(`${str(r.rollout, 128) || '?'}: ${str(r.applies, 32) || '?'}${why ? ` (${why})` : ''}`);
  }
  if (rollouts.length > 10) parts.push(`… ${rollouts.length - 10} more`);
  return parts.join('; ');
}
