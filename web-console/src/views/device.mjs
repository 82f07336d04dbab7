// One device: inventory, labels, online state, last status per component (with error), the
// stage history seen live, and (operators) "update now" per component.

import { html } from 'htm/preact';
import { app, runCommand } from '../store.mjs';
import { Empty, StateBadge, canAct, fmtTime, offline, versionTip } from './common.mjs';

export function DeviceView({ id }) {
  const d = app.model.devices.get(id);
  const dd = app.derived.byDevice.get(id);
  if (!d || !dd) return html`<section><h2>Device</h2><${Empty} text=${`No device ${id} seen (yet).`} /></section>`;
  const operator = canAct();
  return html`<section data-testid="device-view" data-device-id=${id}>
    <h2>Device <span data-testid="device-title">${id}</span> <${StateBadge} state=${dd.worst} /></h2>
    <dl class="facts">
      <dt>online</dt><dd data-testid="device-online">${d.online === null ? 'unknown' : d.online ? `online since ${fmtTime(d.onlineTs)}` : 'offline'}</dd>
      <dt>fleet / wave</dt><dd data-testid="device-assignment">${d.assignment ? `${d.assignment.fleet} / ${d.assignment.wave}` : 'not assigned'}</dd>
      <dt>platform</dt><dd>${d.platform}</dd>
      <dt>agent</dt><dd>${d.agentVersion}</dd>
      <dt>inventory</dt><dd>${fmtTime(d.inventoryTs)}</dd>
      <dt>labels</dt><dd data-testid="device-labels">${Object.entries(d.labels).map(([k, v]) => html`<span class="label">${k}=${v}</span>`)}</dd>
    </dl>
    <h3>Components</h3>
    <table class="list" data-testid="device-components">
      <thead><tr><th>component</th><th>installed</th><th>target</th><th>state</th><th>last report</th><th>error</th>${operator ? html`<th></th>` : null}</tr></thead>
      <tbody>
        ${Object.entries(dd.states).map(([c, cs]) => {
          const s = d.status[c];
          return html`<tr key=${c} data-testid="device-component-row" data-component=${c}>
            <td>${c}</td>
            <td title=${versionTip(c, cs)}>${cs.installed || 'unknown'}</td>
            <td>${cs.target ? `${cs.target.version} (${cs.target.channel || '?'}, ${cs.target.source})` : 'none known'}</td>
            <td><${StateBadge} state=${cs.state} title=${versionTip(c, cs)} /></td>
            <td data-testid="device-stage">${s ? `${s.stage}${s.progress !== null && s.stage === 'downloading' ? ` ${s.progress}%` : ''} ${s.version} ${fmtTime(s.ts)}` : ''}</td>
            <td data-testid="device-error">${s && s.error ? html`<code>${s.error.code}</code> ${s.error.message}` : ''}</td>
            ${operator
              ? html`<td><button data-testid="action-update" data-component=${c} disabled=${offline()}
                  onClick=${() => runCommand(`update ${id} ${c}`, 'update', { device: id, component: c })}>Update now</button></td>`
              : null}
          </tr>`;
        })}
      </tbody>
    </table>
    <h3>Stage history <span class="muted">(seen by this page, newest first)</span></h3>
    ${d.history.length === 0
      ? html`<${Empty} text="No status report yet." />`
      : html`<ol class="history" data-testid="device-history">
          ${[...d.history].reverse().map(
            (s, i) => html`<li key=${i} data-testid="history-row">${fmtTime(s.ts)} · ${s.component} ${s.version} · <b>${s.stage}</b>${s.progress !== null && s.stage === 'downloading' ? ` ${s.progress}%` : ''}${s.error ? ` · ${s.error.code}: ${s.error.message}` : ''}</li>`,
          )}
        </ol>`}
  </section>`;
}
