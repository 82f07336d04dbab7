// History: the controller's audit log (cmd "audit") and the finished rollouts with their
// success rates.

import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { finishedRollouts } from '../derive.mjs';
import { app, invalidate, runCommand } from '../store.mjs';
import { Empty, RolloutState, fmtTime, offline, rolloutHref } from './common.mjs';

const s = (v) => (typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v));

export function HistoryView() {
  const [audit, setAudit] = useState({ rows: null, error: '' });
  const [rollout, setRollout] = useState('');
  const load = async () => {
    const fields = { limit: 200 };
    if (rollout) fields.rollout = rollout;
    const r = await runCommand('audit', 'audit', fields, { show: false });
    // newest first (the controller lists oldest first)
    if (r.ok && Array.isArray(r.result)) setAudit({ rows: r.result.filter((x) => x && typeof x === 'object').reverse(), error: '' });
    else setAudit({ rows: null, error: r.ok ? 'unexpected reply' : `${r.error.code}: ${r.error.message}` });
    invalidate();
  };
  useEffect(() => {
    if (app.conn === 'connected') load();
  }, [app.conn === 'connected']);
  const finished = finishedRollouts(app.model);
  return html`<section>
    <h2>History</h2>
    <h3>Finished rollouts</h3>
    ${finished.length === 0
      ? html`<${Empty} text="No finished rollout." />`
      : html`<table class="list" data-testid="finished-rollouts">
          <thead><tr><th>rollout</th><th>state</th><th>devices</th><th>success rate</th><th>updated</th></tr></thead>
          <tbody>
            ${finished.map(
              (r) => html`<tr key=${r.id} data-testid="finished-row" data-rollout-id=${r.id}>
                <td><a href=${rolloutHref(r.id)}>${r.id}</a></td><td><${RolloutState} state=${r.state} /></td><td>${r.totals.devices}</td>
                <td data-testid="success-rate">${r.successRate === null ? '—' : r.successRate.toFixed(1) + ' %'}</td><td>${fmtTime(r.updated)}</td>
              </tr>`,
            )}
          </tbody>
        </table>`}
    <h3>Audit log</h3>
    <div class="filters">
      <input placeholder="rollout id (optional)" data-testid="audit-rollout" value=${rollout} onInput=${(e) => setRollout(e.currentTarget.value)} />
      <button data-testid="audit-refresh" disabled=${offline()} onClick=${load}>Refresh</button>
    </div>
    ${audit.error ? html`<p class="err" data-testid="audit-error">${audit.error}</p>` : null}
    ${audit.rows === null
      ? html`<${Empty} text="Loading…" />`
      : html`<table class="list" data-testid="audit-log">
          <thead><tr><th>time</th><th>actor</th><th>action</th><th>rollout</th><th>detail</th></tr></thead>
          <tbody>
            ${audit.rows.map(
              (a, i) => html`<tr key=${s(a.id) || i} data-testid="audit-row" data-actor=${s(a.actor)} data-action=${s(a.action)}>
                <td>${fmtTime(s(a.ts))}</td><td data-testid="audit-actor">${s(a.actor)}</td><td data-testid="audit-action">${s(a.action)}</td><td>${s(a.rollout)}</td><td>${s(a.detail)}</td>
              </tr>`,
            )}
          </tbody>
        </table>`}
  </section>`;
}
