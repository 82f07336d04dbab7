import { test } from 'node:test';
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { brokerUrl, uuid } from '../src/session.mjs';
import { subscriptions } from '../src/model.mjs';

test('the broker URL follows the page: wss for https, ws for http, same host and port', () => {
  assert.equal(brokerUrl({ protocol: 'https:', host: 'ota.example:8443' }, '/mqtt'), 'wss://ota.example:8443/mqtt');
  assert.equal(brokerUrl({ protocol: 'http:', host: '127.0.0.1:8080' }, '/ws'), 'ws://127.0.0.1:8080/ws');
});

// the page's crypto; Node 18 (Debian 12's nodejs) has no global one
if (!globalThis.crypto) globalThis.crypto = webcrypto;

test('request ids are distinct RFC 4122 version 4 UUIDs (no secure context needed)', () => {
  const seen = new Set();
  for (let i = 0; i < 1000; i++) {
    const u = uuid();
    assert.match(u, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    seen.add(u);
  }
  assert.equal(seen.size, 1000);
});

test('the subscriptions cover every retained topic of the protocol, under the configured prefix', () => {
  const s = subscriptions('acme/ota');
  for (const t of ['summary', 'releases/+/+', 'rollouts/+', 'alerts/+', 'devices/+/online', 'devices/+/inventory', 'devices/+/assignment',
    'devices/+/status/+', 'fleets/+/waves/+/+', 'fleets/+/policy'])
    assert.ok(s.includes(`acme/ota/${t}`), t);
  assert.ok(s.every((x) => x.startsWith('acme/ota/')));
});
