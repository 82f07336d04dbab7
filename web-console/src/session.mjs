// The MQTT session: one mqtt.js 5 client over WebSockets (through websockify), the retained
// subscriptions, the control request/reply exchange and the role probe. No DOM here.

import mqtt from 'mqtt';
import { subscriptions } from './model.mjs';

export const REQUEST_TIMEOUT_MS = 10000;
/** The commands that change nothing: sent on control/query/<user>, which viewers may write too. */
export const QUERY_COMMANDS = new Set(['rollouts', 'status', 'devices', 'audit', 'policy']);
const NOT_AUTHORIZED = 0x87;
const BAD_LOGIN = 0x86;

/** A random UUID v4 from getRandomValues (randomUUID needs a secure context; plain http may not be). */
export function uuid() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function randomHex(n) {
  const b = new Uint8Array(n);
  crypto.getRandomValues(b);
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

/** ws(s)://<host><path> for the page's own origin. */
export function brokerUrl(loc, path) {
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}${path}`;
}

/**
 * Starts a session. handlers: onState(state, detail) with state 'connecting' | 'connected' |
 * 'reconnecting' | 'auth_failed' | 'closed'; onReset() before the retained state is fetched again
 * (each connect); onMessage(topic, text, retained); onRole('operator' | 'viewer').
 */
export function startSession({ url, username, password, prefix }, handlers) {
  const safeUser = String(username).replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 32) || 'user';
  const clientId = `console-${safeUser}-${randomHex(6)}`;
  const replyTopic = `${prefix}/control/reply/${clientId}`;
  const requestTopic = `${prefix}/control/request/${username}`;
  const queryTopic = `${prefix}/control/query/${username}`;
  const pending = new Map();
  const decoder = new TextDecoder();
  let role = null;
  let ended = false;

  const client = mqtt.connect(url, {
    protocolVersion: 5,
    clean: true,
    clientId,
    username,
    password,
    reconnectPeriod: 1000,
    connectTimeout: 5000,
    timerVariant: 'native', // worker timers start a blob: worker, which a strict CSP refuses
    resubscribe: false, // each connect drops the model and subscribes anew (full refresh)
    createWebsocket: (u) => new WebSocket(u, ['binary']),
  });
  handlers.onState('connecting');

  function publish(topic, payload, opts = {}) {
    const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
    return new Promise((resolve, reject) => {
      client.publish(topic, text, { qos: 1, ...opts }, (err) => (err ? reject(err) : resolve()));
    });
  }

  /**
   * Sends a control request (a read-only command on the query topic, any other on the request
   * topic); resolves with the reply {ok, result|error}; rejects on refusal.
   */
  function request(cmd, fields = {}, { topic = null } = {}) {
    const id = uuid();
    const body = { ...fields, id, reply_to: replyTopic, cmd };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        resolve({ id, ok: false, error: { code: 'timeout', message: `no reply to "${cmd}" from the controller within ${REQUEST_TIMEOUT_MS / 1000} s (is ota-controller running?)` } });
      }, REQUEST_TIMEOUT_MS);
      pending.set(id, { resolve, timer });
      publish(topic || (QUERY_COMMANDS.has(cmd) ? queryTopic : requestTopic), body).catch((err) => {
        clearTimeout(timer);
        pending.delete(id);
        reject(err);
      });
    });
  }

  function onReply(text) {
    let j;
    try {
      j = JSON.parse(text);
    } catch {
      return;
    }
    if (!j || typeof j !== 'object' || typeof j.id !== 'string') return;
    const p = pending.get(j.id);
    if (!p) return;
    pending.delete(j.id);
    clearTimeout(p.timer);
    p.resolve({
      id: j.id,
      ok: j.ok === true,
      result: j.result,
      error: j.ok === true ? null : {
        code: typeof j.error?.code === 'string' ? j.error.code : 'unknown',
        message: typeof j.error?.message === 'string' ? j.error.message : 'the controller gave no message',
      },
    });
  }

  // The role is the broker's word: a viewer's ACL refuses the publish (PUBACK 0x87). The probe's
  // reply, if the controller answers, is not waited for.
  async function probeRole() {
    try {
      await publish(requestTopic, { id: uuid(), reply_to: replyTopic, cmd: 'audit', limit: 1 });
      role = 'operator';
    } catch (err) {
      role = 'viewer';
      if (!err || err.code !== NOT_AUTHORIZED) handlers.onState('connected', `role probe failed: ${err && err.message}`);
    }
    handlers.onRole(role);
  }

  client.on('connect', () => {
    handlers.onReset();
    client.subscribe(replyTopic, { qos: 1 }, () => {
      // QoS 0 for the state: Mosquitto queues at most max_queued_messages (default 1000) QoS 1
      // messages per client and drops the rest, which a burst of 40,000 retained messages passes;
      // QoS 0 goes straight to the socket. A lost connection loses nothing either: every connect
      // takes the whole retained state again.
      client.subscribe(subscriptions(prefix), { qos: 0 }, () => {
        if (!role) probeRole();
      });
    });
    handlers.onState('connected');
  });
  client.on('message', (topic, payload, packet) => {
    if (topic === replyTopic) return onReply(decoder.decode(payload));
    handlers.onMessage(topic, decoder.decode(payload), packet.retain === true);
  });
  client.on('error', (err) => {
    if (err && (err.code === BAD_LOGIN || err.code === NOT_AUTHORIZED) && !ended) {
      ended = true;
      client.end(true);
      handlers.onState('auth_failed', 'wrong user name or password');
    }
  });
  client.on('reconnect', () => !ended && handlers.onState('reconnecting'));
  client.on('offline', () => !ended && handlers.onState('reconnecting'));
  client.on('close', () => !ended && handlers.onState('reconnecting'));

  return {
    client,
    clientId,
    requestTopic,
    replyTopic,
    publish,
    request,
    get role() {
      return role;
    },
    end() {
      ended = true;
      for (const p of pending.values()) clearTimeout(p.timer);
      pending.clear();
      client.end(true);
      handlers.onState('closed');
    },
  };
}
