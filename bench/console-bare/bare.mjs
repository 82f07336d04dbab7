// bench/console.sh's in-browser baseline: bare mqtt.js 5 in the same Chromium, over the page's own
// path (wss://<host>/mqtt), the same subscriptions, counting messages and parsing their JSON,
// and nothing else (no model, no rendering). Bundled by console.sh with the console's esbuild.
import mqtt from 'mqtt';

window.bareRun = ({ username, password, topics, expect }) =>
  new Promise((resolve, reject) => {
    const t0 = performance.now();
    let n = 0;
    let connected = 0;
    const client = mqtt.connect(`wss://${location.host}/mqtt`, {
      protocolVersion: 5, clean: true, clientId: `console-bare-${Math.random().toString(16).slice(2, 10)}`,
      username, password, reconnectPeriod: 0, connectTimeout: 10000, timerVariant: 'native',
      createWebsocket: (u) => new WebSocket(u, ['binary']),
    });
    const decoder = new TextDecoder();
    client.on('error', (e) => reject(new Error(`mqtt.js: ${e.message}`)));
    client.on('connect', () => {
      connected = performance.now() - t0;
      client.subscribe(topics, { qos: 0 });
    });
    client.on('message', (topic, payload) => {
      JSON.parse(decoder.decode(payload));
      if (++n === expect) {
        const ms = performance.now() - t0;
        client.end(true);
        resolve({ ms: Math.round(ms), connected_ms: Math.round(connected), messages: n });
      }
    });
  });
