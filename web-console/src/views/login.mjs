// The login form. The password lives only in this form and the MQTT client (and in
// localStorage when "stay logged in" is ticked).

import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { app, login } from '../store.mjs';

export function Login() {
  const [user, setUser] = useState('');
  const [pass, setPass] = useState('');
  const [stay, setStay] = useState(false);
  const submit = (e) => {
    e.preventDefault();
    if (!user || !pass) return;
    login(user, pass, stay);
  };
  const connecting = app.conn === 'connecting';
  return html`<main class="login">
    <form class="card" onSubmit=${submit} data-testid="login-form">
      <h1>OTA console</h1>
      <label>User name <input data-testid="login-user" autocomplete="username" value=${user} onInput=${(e) => setUser(e.currentTarget.value)} /></label>
      <label>Password <input data-testid="login-password" type="password" autocomplete="current-password" value=${pass}
        onInput=${(e) => setPass(e.currentTarget.value)} /></label>
      <label class="check"><input data-testid="login-stay" type="checkbox" checked=${stay} onChange=${(e) => setStay(e.currentTarget.checked)} /> Stay logged in on this browser</label>
      <button data-testid="login-submit" type="submit" disabled=${!user || !pass}>Log in</button>
      ${app.loginError ? html`<p class="err" data-testid="login-error" role="alert">${app.loginError}</p>` : null}
      ${connecting ? html`<p class="muted" data-testid="conn-state">connecting…</p>` : null}
    </form>
  </main>`;
}
