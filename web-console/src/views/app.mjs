// The shell: top bar (connection state, badges, navigation), the routed view, toasts, dialogs.

import { html } from 'htm/preact';
import { Component } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { app, logout, onRender } from '../store.mjs';
import { ConfirmDialog, ReplyArea, Toasts } from './common.mjs';
import { Login } from './login.mjs';
import { FleetView } from './fleet.mjs';
import { DevicesView } from './devices.mjs';
import { DeviceView } from './device.mjs';
import { RolloutsView, RolloutView } from './rollouts.mjs';
import { HistoryView } from './history.mjs';
import { PolicyView } from './policy.mjs';

function useRoute() {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const f = () => setHash(location.hash);
    addEventListener('hashchange', f);
    return () => removeEventListener('hashchange', f);
  }, []);
  const parts = hash.replace(/^#\/?/, '').split('/');
  let arg = '';
  try {
    arg = decodeURIComponent(parts.slice(1).join('/'));
  } catch {
    arg = '';
  }
  return { view: parts[0] || 'fleet', arg };
}

const NAV = [
  ['fleet', 'Fleet'],
  ['devices', 'Devices & updates'],
  ['rollouts', 'Rollouts'],
  ['history', 'History'],
  ['policy', 'Fleets/policy'],
];

function TopBar({ view }) {
  const d = app.derived;
  const conn = app.conn === 'connected' ? 'connected' : 'reconnecting…';
  // while loading, the controller's summary knows better (fleet.mjs)
  const needs = app.loading && app.model.summary ? app.model.summary.needsUpdate : d.needsUpdate;
  return html`<header class="top">
    <strong class="brand">OTA console</strong>
    <nav>
      ${NAV.map(
        ([k, label]) =>
          html`<a href=${'#/' + k} data-testid=${'nav-' + k} class=${view === k || (view === 'device' && k === 'devices') || (view === 'rollout' && k === 'rollouts') ? 'active' : ''}
            >${label}</a
          >`,
      )}
    </nav>
    <a href="#/rollouts" class=${'pill' + (d.firingAlerts ? ' alert' : '')} title="firing alerts">
      alerts <span data-testid="badge-alerts">${d.firingAlerts}</span></a
    >
    <a href="#/devices?outdated" class=${'pill' + (needs ? ' warn' : '')} title="devices with a component older than its target">
      need updates <span data-testid="badge-outdated">${needs}</span></a
    >
    <span class=${'conn ' + (app.conn === 'connected' ? 'on' : 'off')} data-testid="conn-state">${conn}</span>
    <span class="user" data-testid="user">${app.user} (${app.role || '…'})</span>
    <button data-testid="logout" onClick=${logout}>Log out</button>
  </header>`;
}

/** A view that throws shows its error instead of taking the page (and the session) down. */
class Boundary extends Component {
  componentDidCatch(err) {
    this.setState({ err: String((err && err.message) || err) });
  }
  render({ children }, { err }) {
    return err ? html`<p class="err" data-testid="view-error">This view failed: ${err}</p>` : children;
  }
}

export function App() {
  const [, setTick] = useState(0);
  useEffect(() => onRender(() => setTick((t) => t + 1)), []);
  const route = useRoute();
  if (app.conn === 'logged_out' || app.conn === 'auth_failed' || (app.conn === 'connecting' && !app.everConnected))
    return html`<${Login} />`;
  app.derived.update(app.model);
  let body;
  const v = route.view.split('?')[0];
  const query = route.view.split('?')[1] || '';
  if (v === 'devices') body = html`<${DevicesView} key=${query} query=${query} />`; // a new link, fresh filters
  else if (v === 'device') body = html`<${DeviceView} id=${route.arg} />`;
  else if (v === 'rollouts') body = html`<${RolloutsView} />`;
  else if (v === 'rollout') body = html`<${RolloutView} id=${route.arg} />`;
  else if (v === 'history') body = html`<${HistoryView} />`;
  else if (v === 'policy') body = html`<${PolicyView} />`;
  else body = html`<${FleetView} />`;
  return html`<div class="shell">
    <${TopBar} view=${v} />
    <main class="content"><${Boundary} key=${v}>${body}</${Boundary}></main>
    <footer><${ReplyArea} /></footer>
    <${Toasts} />
    <${ConfirmDialog} />
  </div>`;
}
