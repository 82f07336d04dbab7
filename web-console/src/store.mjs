// The page's state outside the model: login, connection, role, toasts, the last reply, the
// confirmation dialog. Renders are coalesced (render scheduling below).

import { applyMessage, createModel } from './model.mjs';
import { Derived } from './derive.mjs';
import { brokerUrl, startSession } from './session.mjs';

const STORAGE_KEY = 'ota-console-login';
const TOAST_MS = 8000;

export const app = {
  config: { topic_prefix: 'ota/v1', mqtt_path: '/mqtt' },
  session: null,
  user: '',
  conn: 'logged_out', // logged_out | connecting | connected | reconnecting | auth_failed
  loginError: '',
  role: null, // null until the probe answers; 'operator' | 'viewer'
  model: createModel(),
  derived: new Derived(),
  toasts: [], // {id, text, type, shownAt}
  reply: null, // {label, ok, code, message, result, text, at}
  confirm: null, // {text, yes, onYes}
  busy: '',
  everConnected: false,
  loading: false, // the retained state since the last (re)connect is still arriving (see below)
};

// ---- render scheduling ---------------------------------------------------------------------------
// invalidate() (what the user did) renders on the next frame; invalidateData() (a message arrived)
// too, unless a render ran less than DATA_RENDER_MS ago: then at that mark. A lone message (a halt)
// shows on the next frame; a burst (40,000 retained messages at login) costs a few renders a
// second instead of one per frame, which leaves the main thread to the messages
// (bench/console.sh).
const DATA_RENDER_MS = 150;
const listeners = new Set();
let scheduled = false;
let dataTimer = null;
let lastRender = -Infinity;
export function onRender(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}
function flush() {
  if (!scheduled) return;
  scheduled = false;
  if (dataTimer !== null) {
    clearTimeout(dataTimer);
    dataTimer = null;
  }
  lastRender = performance.now();
  for (const fn of listeners) fn();
}
export function invalidate() {
  if (scheduled) return;
  scheduled = true;
  if (typeof requestAnimationFrame === 'function') requestAnimationFrame(flush);
  setTimeout(flush, 250); // a hidden tab gets no animation frames
}
export function invalidateData() {
  if (scheduled || dataTimer !== null) return;
  const wait = lastRender + DATA_RENDER_MS - performance.now();
  if (wait <= 0) return invalidate();
  dataTimer = setTimeout(() => {
    dataTimer = null;
    invalidate();
  }, wait);
}

// ---- loading -------------------------------------------------------------------------------------
// After each (re)connect the broker sends the retained state: 4 messages a device, 40,000 for
// 10,000 devices, seconds of work in a browser. Until no retained message has come for SETTLE_MS
// the page's own counts are partial, so the views show the controller's summary (one message,
// subscribed first) while `app.loading`. One timer per burst, not one per message.
const SETTLE_MS = 500;
let lastRetained = 0;
let settleTimer = null;
function settleCheck() {
  const left = lastRetained + SETTLE_MS - performance.now();
  if (left > 0) {
    settleTimer = setTimeout(settleCheck, left);
    return;
  }
  settleTimer = null;
  app.loading = false;
  invalidate();
}
function retainedArrived() {
  lastRetained = performance.now();
  if (settleTimer === null) settleTimer = setTimeout(settleCheck, SETTLE_MS);
}
function startLoading() {
  app.loading = true;
  retainedArrived();
}

// ---- config --------------------------------------------------------------------------------------
export async function loadConfig() {
  try {
    const res = await fetch('config.json', { cache: 'no-store' });
    if (!res.ok) return;
    const j = await res.json();
    if (j && typeof j.topic_prefix === 'string' && j.topic_prefix) app.config.topic_prefix = j.topic_prefix.replace(/\/+$/, '');
    if (j && typeof j.mqtt_path === 'string' && j.mqtt_path.startsWith('/')) app.config.mqtt_path = j.mqtt_path;
  } catch {
    // no config.json (or not JSON): the defaults hold
  }
}

// ---- toasts --------------------------------------------------------------------------------------
let toastSeq = 0;
export function toast(text, type = 'info') {
  const t = { id: ++toastSeq, text, type, shownAt: Date.now() };
  app.toasts = [...app.toasts.slice(-5), t];
  invalidate();
  setTimeout(() => dismissToast(t.id), TOAST_MS);
}
export function dismissToast(id) {
  app.toasts = app.toasts.filter((t) => t.id !== id);
  invalidate();
}

// ---- login / session -----------------------------------------------------------------------------
export function savedLogin() {
  try {
    const j = JSON.parse(localStorage.getItem(STORAGE_KEY) || 'null');
    return j && typeof j.username === 'string' && typeof j.password === 'string' ? j : null;
  } catch {
    return null;
  }
}

export function login(username, password, stay) {
  if (app.session) app.session.end();
  try {
    if (stay) localStorage.setItem(STORAGE_KEY, JSON.stringify({ username, password }));
    else localStorage.removeItem(STORAGE_KEY);
  } catch {
    // storage refused (private mode): the session stays in memory
  }
  app.user = username;
  app.everConnected = false;
  app.loginError = '';
  app.role = null;
  app.model = createModel();
  app.derived = new Derived();
  const prefix = app.config.topic_prefix;
  app.session = startSession(
    { url: brokerUrl(location, app.config.mqtt_path), username, password, prefix },
    {
      onState(state, detail) {
        if (state === 'auth_failed') {
          app.session = null;
          app.conn = 'auth_failed';
          app.loginError = detail || 'wrong user name or password';
          try {
            localStorage.removeItem(STORAGE_KEY);
          } catch {
            // nothing stored
          }
        } else if (state !== 'closed') {
          app.conn = state;
          if (state === 'connected') app.everConnected = true;
          if (detail) toast(detail, 'error');
        }
        invalidate();
      },
      onReset() {
        // every (re)connect: drop what we knew and take the retained state afresh (no stale counts)
        app.model = createModel();
        app.derived = new Derived();
        startLoading();
        invalidate();
      },
      onMessage(topic, text, retained) {
        if (retained && app.loading) retainedArrived();
        for (const ev of applyMessage(app.model, topic, text, { retained, prefix }))
          toast(ev.text, ev.type === 'rollout_halted' ? 'error' : 'ok');
        invalidateData();
      },
      onRole(role) {
        app.role = role;
        invalidate();
      },
    },
  );
  app.conn = 'connecting';
  invalidate();
}

export function logout() {
  try {
    localStorage.removeItem(STORAGE_KEY);
  } catch {
    // nothing stored
  }
  if (app.session) app.session.end();
  app.session = null;
  app.conn = 'logged_out';
  app.role = null;
  app.model = createModel();
  app.derived = new Derived();
  invalidate();
}

// ---- actions -------------------------------------------------------------------------------------
function describeError(err) {
  if (err && err.code === 0x87) return { code: 'not_authorized', message: 'the broker refused the request (this login may not send control requests)' };
  return { code: 'mqtt_publish_failed', message: String((err && err.message) || err) };
}

let busySeq = 0;

/**
 * Sends one control request and shows its reply in the reply area; resolves with the reply. While
 * it waits (show), the reply area is busy with `<label>…` and the previous reply is cleared, so a
 * reply on screen is always the answer to the last request. `describe(result)` may give the line
 * shown after "ok" instead of the result's JSON.
 */
export async function runCommand(label, cmd, fields = {}, { show = true, describe = null } = {}) {
  if (!app.session) return { ok: false, error: { code: 'not_connected', message: 'not logged in' } };
  const token = show ? ++busySeq : 0;
  if (show) {
    app.reply = null;
    app.busy = `${label}…`;
    invalidate();
  }
  let reply;
  try {
    reply = await app.session.request(cmd, fields);
  } catch (err) {
    reply = { ok: false, error: describeError(err) };
  }
  if (show) {
    if (token === busySeq) app.busy = '';
    let text = null;
    if (reply.ok && describe) {
      try {
        text = describe(reply.result);
      } catch {
        text = null; // the JSON is shown instead
      }
    }
    app.reply = { label, ok: reply.ok, code: reply.ok ? '' : reply.error.code, message: reply.ok ? '' : reply.error.message, result: reply.result, text, at: Date.now() };
    invalidate();
  }
  return reply;
}

/** Asks before a destructive action. */
export function confirmThen(text, yes, onYes) {
  app.confirm = { text, yes, onYes };
  invalidate();
}
export function answerConfirm(ok) {
  const c = app.confirm;
  app.confirm = null;
  invalidate();
  if (ok && c) c.onYes();
}

/**
 * `update` for many (device, component) pairs, 8 in flight; the reply area sums up the outcome
 * and names the first failures.
 */
export async function updateMany(label, pairs) {
  let ok = 0;
  const failures = [];
  let next = 0;
  app.reply = null;
  app.busy = `${label}: 0/${pairs.length}`;
  invalidate();
  async function worker() {
    while (next < pairs.length) {
      const [device, component] = pairs[next++];
      const r = await runCommand(label, 'update', { device, component }, { show: false });
      if (r.ok) ok++;
      else failures.push(`${device}/${component}: ${r.error.code}: ${r.error.message}`);
      app.busy = `${label}: ${ok + failures.length}/${pairs.length}`;
      invalidate();
    }
  }
  await Promise.all(Array.from({ length: Math.min(8, pairs.length) }, worker));
  app.busy = '';
  app.reply = {
    label,
    ok: failures.length === 0,
    code: failures.length ? 'partial' : '',
    message: failures.length ? `${failures.length} failed: ${failures.slice(0, 5).join('; ')}${failures.length > 5 ? ' …' : ''}` : '',
    result: { requested: pairs.length, ok, failed: failures.length },
    at: Date.now(),
  };
  invalidate();
}

/** What tests use: the page's own client, and a publish that resolves on PUBACK. */
export function exposeForTests(w) {
  w.otaConsole = {
    get client() {
      return app.session ? app.session.client : null;
    },
    publish(topic, payload) {
      if (!app.session) return Promise.reject(new Error('not logged in'));
      return app.session.publish(topic, payload);
    },
    /** A control request with its reply; `topic` overrides the one the command would go to. */
    request(cmd, fields, topic) {
      if (!app.session) return Promise.reject(new Error('not logged in'));
      return app.session.request(cmd, fields, { topic });
    },
    get role() {
      return app.role;
    },
  };
}
