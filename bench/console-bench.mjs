// Driver of bench/console.sh: one measurement per run, one JSON line on stdout.
//   node bench/console-bench.mjs mqttjs   bare mqtt.js 5 (what the page uses) over the page's own
//                                         path: wss://<console>/mqtt (nginx, websockify, the
//                                         broker's console listener); connect with the login,
//                                         subscribe the page's retained topics, stop at EXPECT
//                                         messages -> {"ms":..., "messages":...}
//   node bench/console-bench.mjs page     the console in Debian's Chromium (playwright-core): load
//                                         the page, then from the click on "Log in" to the fleet
//                                         counts of COMPONENT complete (total = DEVICES, no device
//                                         unknown) -> {"ms":..., "heap_mb":..., "longest_task_ms":..., "counts":{...}}
// Environment: CONSOLE_SRC (web-console/, for node_modules), CONSOLE_URL (https://127.0.0.1:PORT/),
// CONSOLE_CA (the CA of nginx's certificate), CONSOLE_USER, CONSOLE_PASSWORD, DEVICES, EXPECT
// (mqttjs), COMPONENT (page, default app), TIMEOUT_MS (default 120000), OTA_CHROMIUM.
import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const env = process.env;
const require = createRequire(path.join(env.CONSOLE_SRC, 'package.json'));
const timeoutMs = Number(env.TIMEOUT_MS || 120000);
const fail = (why) => {
  console.error(`console-bench: ${why}`);
  process.exit(1);
};
setTimeout(() => fail(`no result within ${timeoutMs} ms`), timeoutMs + 5000).unref();

// The page's subscriptions (web-console/src/model.mjs), read from its source so both stay one.
async function pageSubscriptions() {
  const model = await import(path.join(env.CONSOLE_SRC, 'src', 'model.mjs'));
  return model.subscriptions('ota/v1');
}

async function bareMqttJs() {
  const mqtt = require('mqtt');
  const WebSocket = require('ws');
  const ca = fs.readFileSync(env.CONSOLE_CA);
  const expect = Number(env.EXPECT);
  const topics = await pageSubscriptions();
  const url = `${env.CONSOLE_URL.replace(/^https/, 'wss').replace(/\/$/, '')}/mqtt`;
  const t0 = performance.now();
  let n = 0;
  const client = mqtt.connect(url, {
    protocolVersion: 5, clean: true, clientId: `console-bench-${crypto.randomBytes(4).toString('hex')}`,
    username: env.CONSOLE_USER, password: env.CONSOLE_PASSWORD, reconnectPeriod: 0, connectTimeout: 10000,
    createWebsocket: (u) => new WebSocket(u, ['binary'], { ca }),
  });
  client.on('error', (e) => fail(`mqtt.js: ${e.message}`));
  await new Promise((resolve) => {
    client.on('message', (topic, payload) => {
      JSON.parse(payload.toString()); // the page parses every message too
      if (++n === expect) resolve();
    });
    client.on('connect', () => client.subscribe(topics, { qos: 0 }));
  });
  const ms = performance.now() - t0;
  client.end(true);
  return { ms: Math.round(ms), messages: n };
}

async function consolePage() {
  const { chromium } = require('playwright-core');
  const devices = Number(env.DEVICES);
  const component = env.COMPONENT || 'app';
  const browser = await chromium.launch({
    executablePath: env.OTA_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--enable-precise-memory-info',
      `--ignore-certificate-errors-spki-list=${env.CONSOLE_SPKI}`],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(env.CONSOLE_URL, { waitUntil: 'load', timeout: 15000 });
    await page.fill('[data-testid=login-user]', env.CONSOLE_USER);
    await page.fill('[data-testid=login-password]', env.CONSOLE_PASSWORD);
    // Long tasks (> 50 ms on the main thread) from the click on: the page must not freeze.
    await page.evaluate(() => {
      window.__longest = 0;
      new PerformanceObserver((l) => {
        for (const e of l.getEntries()) window.__longest = Math.max(window.__longest, e.duration);
      }).observe({ type: 'longtask' });
      window.__t0 = performance.now();
      document.querySelector('[data-testid=login-submit]').click();
    });
    await page.waitForFunction(
      ({ devices, component }) => {
        const total = document.querySelector(`[data-testid=fleet-total][data-component="${component}"]`);
        if (!total || Number(total.textContent.trim()) !== devices) return false;
        let sum = 0;
        let unknown = 0;
        for (const e of document.querySelectorAll(`[data-testid=fleet-count][data-component="${component}"]`)) {
          const v = Number(e.textContent.trim());
          sum += v;
          if (e.dataset.state === 'unknown') unknown = v;
        }
        if (sum !== devices || unknown !== 0) return false;
        window.__t1 = performance.now();
        return true;
      },
      { devices, component },
      { polling: 'raf', timeout: timeoutMs },
    );
    const r = await page.evaluate(({ component }) => {
      const counts = {};
      for (const e of document.querySelectorAll(`[data-testid=fleet-count][data-component="${component}"]`))
        counts[e.dataset.state] = Number(e.textContent.trim());
      return { ms: window.__t1 - window.__t0, heap: performance.memory.usedJSHeapSize, longest: window.__longest, counts };
    }, { component });
    if (errors.length) fail(`page errors: ${errors.join('; ')}`);
    return { ms: Math.round(r.ms), heap_mb: +(r.heap / 1048576).toFixed(1), longest_task_ms: Math.round(r.longest), counts: r.counts };
  } finally {
    await browser.close();
  }
}

const mode = process.argv[2];
let result;
if (mode === 'mqttjs') result = await bareMqttJs();
else if (mode === 'page') result = await consolePage();
else fail(`mode "${mode}": mqttjs or page`);
console.log(JSON.stringify(result));
process.exit(0);
