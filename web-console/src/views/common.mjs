// Small shared pieces: state badges, the reply area, toasts, the confirmation dialog, links.
// Everything a device or the controller sent is rendered as text (Preact escapes it).

import { html } from 'htm/preact';
import { useEffect, useRef } from 'preact/hooks';
import { STATE_LABELS } from '../derive.mjs';
import { answerConfirm, app, dismissToast } from '../store.mjs';

export function deviceHref(id) {
  return `#/device/${encodeURIComponent(id)}`;
}
export function rolloutHref(id) {
  return `#/rollout/${encodeURIComponent(id)}`;
}

export function StateBadge({ state, title }) {
  return html`<span class=${`badge st-${state}`} data-testid="state-badge" data-state=${state} title=${title || ''}
    >${STATE_LABELS[state] || state}</span
  >`;
}

export function RolloutState({ state }) {
  return html`<span class=${`badge rs-${state}`} data-testid="rollout-state" data-state=${state}>${state}</span>`;
}

/** The version-difference tooltip text of one component state. */
export function versionTip(component, cs) {
  const have = cs.installed || 'unknown';
  if (!cs.target) return `${component}: ${have} (no release known)`;
  const src = { policy: "the fleet's policy channel", wave: 'the assigned wave', newest: 'newest release' }[cs.target.source];
  const rel = cs.cmp === null ? 'do not compare' : cs.cmp < 0 ? 'update available' : 'up to date';
  return `${component}: ${have} → ${cs.target.version} (${cs.target.channel || '?'}, from ${src}): ${rel}`;
}

export function ReplyArea() {
  const r = app.reply;
  return html`<div class="reply" data-testid="reply" data-ok=${r ? String(r.ok) : ''} data-busy=${app.busy ? 'true' : 'false'} aria-live="polite">
    ${app.busy ? html`<span class="busy">${app.busy}</span> ` : null}
    ${!r
      ? html`<span class="muted">controller replies appear here</span>`
      : r.ok
        ? html`<span class="ok">${r.label}: ok</span>${r.text ? html` <code>${r.text}</code>` : r.result !== undefined ? html` <code>${summarise(r.result)}</code>` : null}`
        : html`<span class="err">${r.label}: ${r.code}: ${r.message}</span>`}
  </div>`;
}

function summarise(v) {
  const t = JSON.stringify(v);
  return t && t.length > 300 ? t.slice(0, 300) + '…' : t;
}

export function Toasts() {
  return html`<div class="toasts">
    ${app.toasts.map(
      (t) =>
        html`<div key=${t.id} class=${`toast t-${t.type}`} data-testid="toast" data-type=${t.type} data-shown-at=${String(t.shownAt)}
          role="status" onClick=${() => dismissToast(t.id)}>${t.text}</div>`,
    )}
  </div>`;
}

export function ConfirmDialog() {
  const c = app.confirm;
  const cancel = useRef(null);
  useEffect(() => {
    if (c && cancel.current) cancel.current.focus(); // Enter does the harmless thing
  }, [c]);
  if (!c) return null;
  const onKey = (e) => e.key === 'Escape' && answerConfirm(false);
  return html`<div class="overlay" onKeyDown=${onKey}>
    <div class="dialog" role="dialog" aria-modal="true" data-testid="confirm-dialog">
      <p data-testid="confirm-text">${c.text}</p>
      <div class="row">
        <button class="danger" data-testid="confirm-yes" onClick=${() => answerConfirm(true)}>${c.yes}</button>
        <button data-testid="confirm-no" ref=${cancel} onClick=${() => answerConfirm(false)}>Cancel</button>
      </div>
    </div>
  </div>`;
}

export function canAct() {
  return app.role === 'operator';
}

export function fmtTime(iso) {
  return iso ? iso.replace('T', ' ').replace('Z', ' UTC') : '';
}

export function Empty({ text }) {
  return html`<p class="muted">${text}</p>`;
}

export function offline() {
  return app.conn !== 'connected';
}
