// Entry point: read config.json, expose the test hook, log in again if the user chose to stay
// logged in, render.

import { html } from 'htm/preact';
import { render } from 'preact';
import { App } from './views/app.mjs';
import { exposeForTests, loadConfig, login, savedLogin } from './store.mjs';

async function main() {
  await loadConfig();
  exposeForTests(window);
  const saved = savedLogin();
  if (saved) login(saved.username, saved.password, true);
  render(html`<${App} />`, document.getElementById('app'));
}

main();
