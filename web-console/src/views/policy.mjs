// Fleets and their policy: the place for schedules and strategy (issue 11 item 8, from the
// fleet-policy branch). Read-only for now: the retained fleets/<fleet>/policy document when one
// is published, and the wave offers the controller keeps for each fleet.

import { html } from 'htm/preact';
import { app } from '../store.mjs';
import { Empty } from './common.mjs';

function Value({ v, depth = 0 }) {
  if (v === null || typeof v !== 'object') return html`<span>${JSON.stringify(v)}</span>`;
  if (depth >= 8) return html`<span class="muted">…</span>`;
  const entries = (Array.isArray(v) ? v.map((x, i) => [i, x]) : Object.entries(v)).slice(0, 200);
  return html`<dl class="tree">${entries.map(([k, x]) => html`<dt>${String(k)}</dt><dd><${Value} v=${x} depth=${depth + 1} /></dd>`)}</dl>`;
}

export function PolicyView() {
  const m = app.model;
  const fleets = new Set(m.policies.keys());
  for (const w of m.waves.values()) fleets.add(w.fleet);
  for (const d of m.devices.values()) if (d.assignment?.fleet) fleets.add(d.assignment.fleet);
  const list = [...fleets].sort();
  return html`<section>
    <h2>Fleets and policy</h2>
    ${list.length === 0 ? html`<${Empty} text="No fleet seen yet." />` : null}
    ${list.map((f) => {
      const waves = [...m.waves.values()].filter((w) => w.fleet === f).sort((a, b) => (a.wave + a.component < b.wave + b.component ? -1 : 1));
      const p = m.policies.get(f);
      return html`<article key=${f} class="card" data-testid="fleet-policy" data-fleet=${f}>
        <h3>${f}</h3>
        <h4>Wave offers</h4>
        ${waves.length === 0
          ? html`<${Empty} text="none" />`
          : html`<ul>${waves.map((w) => html`<li>${w.wave} · ${w.component}: ${w.release ? w.release.version : '?'} (${w.state}, ${w.rollout})</li>`)}</ul>`}
        <h4>Policy</h4>
        ${p ? html`<${Value} v=${p} />` : html`<${Empty} text="No policy published for this fleet (the controller's config file applies)." />`}
      </article>`;
    })}
  </section>`;
}
