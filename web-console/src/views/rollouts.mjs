// Rollouts: the list with state, and one rollout with a progress bar per wave, soak countdown,
// approval / window waits, halted reason, and (operators) the actions.

import { html } from 'htm/preact';
import { useEffect } from 'preact/hooks';
import { app, confirmThen, invalidate, runCommand } from '../store.mjs';
import { Empty, RolloutState, canAct, fmtTime, offline, rolloutHref } from './common.mjs';

const LIVE = ['active', 'paused', 'halted'];
const PARTS = [
  ['succeeded', 'succeeded'],
  ['failed', 'failed'],
  ['silent', 'silent'],
  ['in_progress', 'in progress'],
  ['pending', 'pending'],
];

function sortedRollouts() {
  return [...app.model.rollouts.values()].sort((a, b) => {
    const la = LIVE.includes(a.state) ? 0 : 1;
    const lb = LIVE.includes(b.state) ? 0 : 1;
    if (la !== lb) return la - lb;
    return a.updated < b.updated ? 1 : a.updated > b.updated ? -1 : a.id < b.id ? -1 : 1;
  });
}

export function RolloutsView() {
  const list = sortedRollouts();
  return html`<section>
    <h2>Rollouts</h2>
    ${list.length === 0
      ? html`<${Empty} text="No rollout yet." />`
      : html`<table class="list" data-testid="rollout-list">
          <thead><tr><th>rollout</th><th>state</th><th>fleet</th><th>component</th><th>version</th><th>wave</th><th>progress</th><th>alert</th></tr></thead>
          <tbody>
            ${list.map((r) => {
              const a = app.model.alerts.get(r.id);
              const t = r.totals;
              return html`<tr key=${r.id} data-testid="rollout-row" data-rollout-id=${r.id} data-state=${r.state}>
                <td><a href=${rolloutHref(r.id)} data-testid="rollout-link">${r.id}</a></td>
                <td><${RolloutState} state=${r.state} /></td>
                <td>${r.fleet}</td><td>${r.component}</td><td>${r.version}</td><td>${r.wave}</td>
                <td>${t.succeeded + t.already}/${t.devices} done${t.failed ? `, ${t.failed} failed` : ''}${t.silent ? `, ${t.silent} silent` : ''}</td>
                <td>
                  ${a && a.state === 'firing' ? html`<span class="badge alert" data-testid="rollout-alert">${a.reason || 'firing'}</span>` : ''}
                  ${r.waves.some((w) => w.state === 'waiting_approval') ? html`<span class="badge rs-paused" data-testid="rollout-needs-approval">needs approval</span>` : ''}
                </td>
              </tr>`;
            })}
          </tbody>
        </table>`}
  </section>`;
}

function countdown(iso, now) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return '';
  const s = Math.round((t - now) / 1000);
  if (s <= 0) return 'soak over';
  const m = Math.floor(s / 60);
  return `soak ends in ${m ? m + ' min ' : ''}${s % 60} s`;
}

function waveNote(w, now) {
  if (w.state === 'waiting_approval') return 'waiting for approval';
  if (w.state === 'waiting_window') return 'waiting for maintenance window';
  if (w.state === 'soaking' && w.soak_until) return countdown(w.soak_until, now);
  if (w.approval === 'approved') return 'approved';
  return '';
}

export function WaveBar({ w, now }) {
  const total = Math.max(1, w.devices);
  const seg = (k, n) => (n > 0 ? html`<span class=${'seg s-' + k} style=${{ width: `${(100 * n) / total}%` }} title=${`${k}: ${n}`}></span>` : null);
  const note = waveNote(w, now);
  return html`<div class="wave" data-testid="wave-bar" data-wave=${w.name} data-state=${w.state}>
    <div class="wave-head">
      <b>${w.name}</b> <span class=${'badge ws-' + w.state} data-testid="wave-state">${w.state.replace('_', ' ')}</span>
      ${note ? html` <span class="note" data-testid="wave-note">${note}</span>` : null}
      <span class="muted"> ${w.devices} devices${w.success_percent !== null ? ` · success threshold ${w.success_percent.toFixed(1)} %` : ''}</span>
    </div>
    <div class="bar">${seg('succeeded', w.succeeded + w.already)}${seg('failed', w.failed)}${seg('silent', w.silent)}${seg('in_progress', w.in_progress)}${seg('pending', w.pending)}</div>
    <div class="wave-nums">
      ${PARTS.map(
        ([k, label]) =>
          html`<span data-testid="wave-count" data-kind=${k}>${label} <b>${k === 'succeeded' ? w.succeeded + w.already : w[k]}</b></span> `,
      )}
    </div>
  </div>`;
}

function act(r, cmd) {
  const run = () => runCommand(`${cmd} ${r.id}`, cmd, { rollout: r.id });
  if (cmd === 'abort') confirmThen(`Abort rollout ${r.id}? Devices that have not started will not start.`, 'Abort', run);
  else if (cmd === 'retry') confirmThen(`Retry rollout ${r.id}? Failed devices are asked to install again.`, 'Retry', run);
  else run();
}

export function RolloutView({ id }) {
  useEffect(() => {
    const t = setInterval(invalidate, 1000); // the soak countdown
    return () => clearInterval(t);
  }, []);
  const r = app.model.rollouts.get(id);
  if (!r) return html`<section><h2>Rollout</h2><${Empty} text=${`No rollout ${id} seen (yet).`} /></section>`;
  const a = app.model.alerts.get(id);
  const now = Date.now();
  const operator = canAct();
  const needsApproval = r.waves.some((w) => w.state === 'waiting_approval');
  return html`<section data-testid="rollout-view" data-rollout-id=${id}>
    <h2>Rollout <span data-testid="rollout-title">${id}</span> <${RolloutState} state=${r.state} /></h2>
    <p class="muted">${r.fleet} · ${r.component} ${r.version} · created ${fmtTime(r.created)} · updated ${fmtTime(r.updated)}</p>
    ${r.reason ? html`<p class=${r.state === 'halted' ? 'err' : 'muted'} data-testid="rollout-reason">${r.state}: ${r.reason}</p>` : null}
    ${a ? html`<p class=${a.state === 'firing' ? 'err' : 'muted'} data-testid="rollout-alert-state" data-state=${a.state}>
      ${`alert ${a.state}${a.wave ? ` on wave ${a.wave}` : ''}${a.reason ? `: ${a.reason}` : ''}${a.resolved_by ? ` · resolved by ${a.resolved_by}` : ''}${a.resolution ? ` (${a.resolution})` : ''}`}</p>` : null}
    ${operator
      ? html`<div class="actions">
          <button data-testid="action-approve" class=${needsApproval ? 'primary' : ''} disabled=${offline()} onClick=${() => act(r, 'approve')}>Approve</button>
          <button data-testid="action-pause" disabled=${offline()} onClick=${() => act(r, 'pause')}>Pause</button>
          <button data-testid="action-resume" disabled=${offline()} onClick=${() => act(r, 'resume')}>Resume</button>
          <button data-testid="action-retry" disabled=${offline()} onClick=${() => act(r, 'retry')}>Retry</button>
          <button data-testid="action-abort" class="danger" disabled=${offline()} onClick=${() => act(r, 'abort')}>Abort</button>
        </div>`
      : null}
    <div class="waves">${r.waves.map((w) => html`<${WaveBar} key=${w.name} w=${w} now=${now} />`)}</div>
    <p data-testid="rollout-totals">
      ${`total: ${r.totals.devices} devices, ${r.totals.succeeded} succeeded, ${r.totals.already} already there, ${r.totals.failed} failed, ` +
      `${r.totals.silent} silent, ${r.totals.in_progress} in progress, ${r.totals.pending} pending`}
    </p>
  </section>`;
}
