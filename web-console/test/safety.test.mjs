import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
function sources(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.mjs') ? [join(dir, e.name)] : [],
  );
}

test('no source sets HTML from strings or evaluates code', () => {
  const files = sources(join(root, 'src'));
  assert.ok(files.length >= 10);
  for (const f of files) {
    const text = readFileSync(f, 'utf8');
    for (const bad of ['innerHTML', 'outerHTML', 'insertAdjacentHTML', 'dangerouslySetInnerHTML', 'document.write', 'eval(', 'new Function'])
      assert.ok(!text.includes(bad), `${f} uses ${bad}`);
  }
});

test('index.html: a strict CSP, no inline script or style, no external URL', () => {
  const html = readFileSync(join(root, 'index.html'), 'utf8');
  const csp = /http-equiv="Content-Security-Policy" content="([^"]+)"/.exec(html);
  assert.ok(csp, 'no CSP meta');
  for (const d of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "object-src 'none'"])
    assert.ok(csp[1].includes(d), d);
  assert.ok(!/unsafe-inline|unsafe-eval/.test(csp[1]));
  assert.ok(!/<script(?![^>]*\ssrc=)[^>]*>/.test(html), 'inline script');
  assert.ok(!/<style|\sstyle="/.test(html), 'inline style');
  assert.ok(!/(src|href)="(https?:)?\/\//.test(html), 'external URL');
});
