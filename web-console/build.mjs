// Bundles the console with esbuild: dist/ (or $OTA_CONSOLE_OUT) gets index.html, style.css and
// app.js (+ its source map). No network, no CDN: everything comes from node_modules.

import { build } from 'esbuild';
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.env.OTA_CONSOLE_OUT || join(here, 'dist'));

await mkdir(out, { recursive: true });
await build({
  entryPoints: [join(here, 'src/main.mjs')],
  outfile: join(out, 'app.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022'],
  minify: process.env.OTA_CONSOLE_MINIFY !== '0', // 0: readable names in profiles (bench/console.sh)
  sourcemap: true,
  legalComments: 'linked',
  logLevel: 'warning',
});
for (const f of ['index.html', 'style.css']) await copyFile(join(here, f), join(out, f));
console.log(`ota console built in ${out}`);
