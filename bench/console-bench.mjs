// Driver of bench/console.sh: one measurement per run, one JSON line on stdout.
//   node bench/console-bench.mjs mqttjs   bare mqtt.js 5 (what the page uses) over the page's own
//                                         path: wss://<console>/mqtt (nginx, websockify, the
//                                         broker's console listener); connect with the login,
//                                         subscribe the page's retained topics, stop at EXPECT
//                                         messages -> {"ms":..., "messages":...}
//   node bench/console-bench.mjs bare     the same mqtt.js in Chromium (bench/console-bare/bare.html,
//                                         served beside the page): connect, subscribe, parse,
//                                         stop at EXPECT messages -> {"ms":..., "messages":...}
//   node bench/console-bench.mjs page     the console in Debian's Chromium (playwright-core): load
//                                         the page, then from the click on "Log in" to the fleet
//                                         counts of COMPONENT complete in the page's own model
//                                         (total = DEVICES, no device unknown, EXPECT messages
//                                         taken in) -> {"ms":..., "final_counts_ms":..., "heap_mb":...,
//                                         "longest_task_ms":..., "counts":{...}}; final_counts_ms:
//                                         from the click to the counts shown being those final
//                                         ones (from the controller's summary while the page loads)
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

async function launch() {
  const { chromium } = require('playwright-core');
  return chromium.launch({
    executablePath: env.OTA_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--enable-precise-memory-info',
      `--ignore-certificate-errors-spki-list=${env.CONSOLE_SPKI}`],
  });
}

// bare mqtt.js in the same browser (bench/console-bare/): the in-browser baseline.
async function barePage() {
  const browser = await launch();
  try {
    const page = await (await browser.newContext()).newPage();
    await page.goto(new URL('bare.html', env.CONSOLE_URL).href, { waitUntil: 'load', timeout: 15000 });
    await page.waitForFunction(() => typeof window.bareRun === 'function', null, { timeout: 10000 });
    return await page.evaluate((a) => window.bareRun(a), {
      username: env.CONSOLE_USER, password: env.CONSOLE_PASSWORD, topics: await pageSubscriptions(), expect: Number(env.EXPECT),
    });
  } finally {
    await browser.close();
  }
}

async function consolePage() {
  const devices = Number(env.DEVICES);
  const component = env.COMPONENT || 'app';
  const browser = await launch();
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(env.CONSOLE_URL, { waitUntil: 'load', timeout: 15000 });
    await page.fill('[data-testid=login-user]', env.CONSOLE_USER);
    await page.fill('[data-testid=login-password]', env.CONSOLE_PASSWORD);
    let cdp = null;
    if (env.CONSOLE_PROFILE) {
      cdp = await context.newCDPSession(page);
      await cdp.send('Profiler.enable');
      await cdp.send('Profiler.setSamplingInterval', { interval: 200 });
      await cdp.send('Profiler.start');
    }
    // Long tasks (> 50 ms on the main thread) from the click on: the page must not freeze.
    await page.evaluate(() => {
      window.__longest = 0;
      new PerformanceObserver((l) => {
        for (const e of l.getEntries()) window.__longest = Math.max(window.__longest, e.duration);
      }).observe({ type: 'longtask' });
      window.__t0 = performance.now();
      document.querySelector('[data-testid=login-submit]').click();
      // the session's client exists once the click returns: when it connected, and when the
      // first and the last message arrived
      const c = window.otaConsole.client;
      window.__msgs = 0;
      c.on('connect', () => { window.__connect = performance.now(); });
      c.on('message', () => {
        if (!window.__msgs++) window.__first = performance.now();
        window.__last = performance.now();
      });
    });
    // Polled every frame: each change of the counts shown (whichever source: the controller's
    // summary while the page loads, then its own) is recorded with its time, until the page's own
    // counts are complete (total = DEVICES, none unknown, every retained message taken in).
    await page.waitForFunction(
      ({ devices, component, expect }) => {
        const table = document.querySelector('[data-testid=fleet-counts]');
        const total = document.querySelector(`[data-testid=fleet-total][data-component="${component}"]`);
        if (!table || !total) return false;
        const shown = {};
        for (const e of document.querySelectorAll(`[data-testid=fleet-count][data-component="${component}"]`))
          shown[e.dataset.state] = Number(e.textContent.trim());
        shown.total = Number(total.textContent.trim());
        const key = JSON.stringify(shown);
        window.__shots = window.__shots || [];
        const last = window.__shots[window.__shots.length - 1];
        if (!last || last.key !== key || last.source !== table.dataset.source)
          window.__shots.push({ t: performance.now(), key, source: table.dataset.source });
        if (table.dataset.source !== 'live' || shown.total !== devices || shown.unknown !== 0) return false;
        if (!window.__tCounts) window.__tCounts = performance.now();
        // Complete = every retained message taken in, not only the online and inventory messages
        // that make the counts first look right (a status may still turn a device failed).
        if (window.__msgs < expect) return false;
        window.__t1 = performance.now();
        return true;
      },
      { devices, component, expect: Number(env.EXPECT) },
      { polling: 'raf', timeout: timeoutMs },
    );
    const r = await page.evaluate(({ component }) => {
      const counts = {};
      for (const e of document.querySelectorAll(`[data-testid=fleet-count][data-component="${component}"]`))
        counts[e.dataset.state] = Number(e.textContent.trim());
      const rel = (t) => Math.round(t - window.__t0);
      // The counts are final from the first shot after which they never changed again (they
      // equal the page's own complete counts): the operator has the right numbers from then on.
      const shots = window.__shots;
      const finalKey = shots[shots.length - 1].key;
      let i = shots.length - 1;
      while (i > 0 && shots[i - 1].key === finalKey) i--;
      return { ms: window.__t1 - window.__t0, heap: performance.memory.usedJSHeapSize, longest: window.__longest, counts,
        final_counts_ms: rel(shots[i].t), final_counts_source: shots[i].source, first_source: shots[0].source,
        counts_at: rel(window.__tCounts), connect: rel(window.__connect), first: rel(window.__first), last: rel(window.__last), messages: window.__msgs };
    }, { component });
    if (cdp) profileSummary((await cdp.send('Profiler.stop')).profile);
    if (errors.length) fail(`page errors: ${errors.join('; ')}`);
    return { ms: Math.round(r.ms), final_counts_ms: r.final_counts_ms, final_counts_source: r.final_counts_source,
      first_source: r.first_source, heap_mb: +(r.heap / 1048576).toFixed(1), longest_task_ms: Math.round(r.longest), counts: r.counts,
      counts_right_ms: r.counts_at, connected_ms: r.connect, first_message_ms: r.first, last_message_ms: r.last, messages: r.messages };
  } finally {
    await browser.close();
  }
}

// CONSOLE_PROFILE=FILE: the page's CPU profile from the click to complete counts goes to FILE
// (open it in Chromium's DevTools); the 25 functions with the most self time go to stderr.
function profileSummary(profile) {
  fs.writeFileSync(env.CONSOLE_PROFILE, JSON.stringify(profile));
  const self = new Map();
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const dt = profile.timeDeltas;
  let total = 0;
  profile.samples.forEach((id, i) => {
    const n = byId.get(id);
    const f = n.callFrame;
    const key = `${f.functionName || '(anonymous)'} ${path.basename(f.url || '')}:${f.lineNumber + 1}`;
    const us = dt[i] || 0;
    total += us;
    self.set(key, (self.get(key) || 0) + us);
  });
  const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25);
  console.error(`profile: ${(total / 1000).toFixed(0)} ms sampled`);
  for (const [k, us] of top) console.error(`${(us / 1000).toFixed(1).padStart(8)} ms  ${k}`);
}

const mode = process.argv[2];
let result;
if (mode === 'mqttjs') result = await bareMqttJs();
else if (mode === 'bare') result = await barePage();
else if (mode === 'page') result = await consolePage();
else fail(`mode "${mode}": mqttjs, bare or page`);
console.log(JSON.stringify(result));
process.exit(0);
