// Browser driver for the console's browser tests (tests/browser/browser.hpp, kit::Browser).
// It runs Debian's Chromium headless through playwright-core and carries out one command per
// line read from the FIFO $OTA_DRIVER_IN, answering one JSON line per command into the FIFO
// $OTA_DRIVER_OUT (stdout and stderr stay free for logs):
//   {"id":1,"op":"open","page":"p","url":"https://..."}   -> {"id":1,"ok":true}
//   {"id":2,"op":"click","page":"p","selector":"[data-testid=approve]"}
//   {"id":3,"op":"fill","page":"p","selector":"...","value":"alice"}
//   {"id":4,"op":"wait","page":"p","selector":"...","text":"regex or empty","timeout_ms":5000}
//           -> {"ok":true,"value":"<the element's text>"} once the element is visible (and its
//              text matches), else {"ok":false,"error":"..."}
//   {"id":5,"op":"text","page":"p","selector":"..."}     -> {"ok":true,"value":"..."}
//   {"id":6,"op":"count","page":"p","selector":"..."}    -> {"ok":true,"value":3}
//   {"id":7,"op":"eval","page":"p","js":"() => 1+1"}     -> {"ok":true,"value":2} (awaited)
//   {"id":8,"op":"screenshot","page":"p","path":"/tmp/x.png","full_page":false}
//   {"id":9,"op":"reload","page":"p"}   {"id":10,"op":"close","page":"p"}
//   {"id":11,"op":"dialogs","page":"p"} -> the texts of dialogs and console errors seen so far
// Environment: OTA_CONSOLE_DIR (where web-console/node_modules is), OTA_CHROMIUM (the browser),
// OTA_BROWSER_SPKI (base64 SHA-256 of the console server's public key: that certificate is
// trusted, nothing else is), OTA_BROWSER_VIEWPORT ("1280x800").
import { createRequire } from 'node:module';
import path from 'node:path';
import fs from 'node:fs';
import readline from 'node:readline';

const consoleDir = process.env.OTA_CONSOLE_DIR;
const require = createRequire(path.join(consoleDir, 'package.json'));
const { chromium } = require('playwright-core');

const [vw, vh] = (process.env.OTA_BROWSER_VIEWPORT || '1280x800').split('x').map(Number);
const args = ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'];
if (process.env.OTA_BROWSER_SPKI) args.push(`--ignore-certificate-errors-spki-list=${process.env.OTA_BROWSER_SPKI}`);
const browser = await chromium.launch({
  executablePath: process.env.OTA_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args,
});
const pages = new Map();  // name -> {page, context, events: []}

function get(name) {
  const p = pages.get(name);
  if (!p) throw new Error(`no page named ${name}`);
  return p;
}

async function open(cmd) {
  let entry = pages.get(cmd.page);
  if (!entry) {
    const context = await browser.newContext({ viewport: { width: vw, height: vh } });
    const page = await context.newPage();
    entry = { page, context, events: [] };
    page.on('dialog', (d) => { entry.events.push(`dialog: ${d.message()}`); d.dismiss().catch(() => {}); });
    page.on('pageerror', (e) => entry.events.push(`pageerror: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') entry.events.push(`console: ${m.text()}`); });
    pages.set(cmd.page, entry);
  }
  await entry.page.goto(cmd.url, { waitUntil: 'load', timeout: cmd.timeout_ms || 15000 });
}

async function wait(cmd) {
  const { page } = get(cmd.page);
  const timeout = cmd.timeout_ms || 5000;
  const loc = page.locator(cmd.selector).first();
  const re = cmd.text ? new RegExp(cmd.text) : null;
  const deadline = Date.now() + timeout;
  await loc.waitFor({ state: 'visible', timeout });
  let text = '';
  for (;;) {
    try {
      text = (await loc.innerText({ timeout: Math.max(100, deadline - Date.now()) })).trim();
    } catch (e) {
      throw new Error(`${cmd.selector}: gone or hidden (last text ${JSON.stringify(text)}): ${e.message}`);
    }
    if (!re || re.test(text)) return text;
    if (Date.now() >= deadline) throw new Error(`${cmd.selector}: text ${JSON.stringify(text)} does not match /${cmd.text}/ after ${timeout} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function run(cmd) {
  switch (cmd.op) {
    case 'open': await open(cmd); return null;
    case 'click': await get(cmd.page).page.locator(cmd.selector).first().click({ timeout: cmd.timeout_ms || 5000 }); return null;
    case 'fill': await get(cmd.page).page.locator(cmd.selector).first().fill(cmd.value, { timeout: cmd.timeout_ms || 5000 }); return null;
    case 'check': await get(cmd.page).page.locator(cmd.selector).first().check({ timeout: cmd.timeout_ms || 5000 }); return null;
    case 'wait': return await wait(cmd);
    case 'text': return (await get(cmd.page).page.locator(cmd.selector).first().innerText({ timeout: cmd.timeout_ms || 5000 })).trim();
    case 'count': return await get(cmd.page).page.locator(cmd.selector).count();
    case 'eval': return await get(cmd.page).page.evaluate(`(${cmd.js})()`);
    case 'screenshot': await get(cmd.page).page.screenshot({ path: cmd.path, fullPage: !!cmd.full_page }); return null;
    case 'reload': await get(cmd.page).page.reload({ waitUntil: 'load' }); return null;
    case 'dialogs': return get(cmd.page).events.slice();
    case 'close': {
      const e = get(cmd.page);
      pages.delete(cmd.page);
      await e.context.close();
      return null;
    }
    default: throw new Error(`unknown op ${cmd.op}`);
  }
}

const out = fs.openSync(process.env.OTA_DRIVER_OUT, 'w');
const answer = (obj) => fs.writeSync(out, JSON.stringify(obj) + '\n');
const rl = readline.createInterface({ input: fs.createReadStream(process.env.OTA_DRIVER_IN) });
for await (const line of rl) {
  if (!line.trim()) continue;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    answer({ id: null, ok: false, error: `not JSON: ${e.message}` });
    continue;
  }
  try {
    const value = await run(cmd);
    answer({ id: cmd.id, ok: true, value: value === undefined ? null : value });
  } catch (e) {
    answer({ id: cmd.id, ok: false, error: String(e.message || e).split('\n')[0] });
  }
}
await browser.close();
process.exit(0);
