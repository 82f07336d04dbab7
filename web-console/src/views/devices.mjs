// The device table: badges, version tooltips, filters, search, pages of 50; for operators,
// checkboxes and "update selected" / "update all outdated".

import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { STATES, STATE_LABELS, filterDevices } from '../derive.mjs';
import { app, confirmThen, updateMany } from '../store.mjs';
import { StateBadge, canAct, deviceHref, offline, versionTip } from './common.mjs';

const PAGE = 50;
let sortedCache = { rev: -1, model: null, ids: [] };
function sortedIds(model) {
  if (sortedCache.model !== model || sortedCache.rev !== model.deviceSetRev)
    sortedCache = { rev: model.deviceSetRev, model, ids: [...model.devices.keys()].sort() };
  return sortedCache.ids;
}

function parseQuery(q) {
  const p = new URLSearchParams(q);
  return {
    component: p.get('component') || '',
    state: STATES.includes(p.get('state')) ? p.get('state') : '',
    outdated: p.has('outdated'),
    failed: p.has('failed'),
    offline: p.has('offline'),
    label: p.get('label') || '',
    fleet: p.get('fleet') || '',
    search: p.get('search') || '',
  };
}

/** The (device, component) pairs to update: the chosen component, or each one needing an update. */
function pairsFor(ids, component) {
  const out = [];
  for (const id of ids) {
    const dd = app.derived.byDevice.get(id);
    if (!dd) continue;
    for (const [c, cs] of Object.entries(dd.states)) if ((!component || c === component) && (cs.needsUpdate || cs.state === 'failed')) out.push([id, c]);
  }
  return out;
}

export function DevicesView({ query }) {
  const [f, setF] = useState(() => parseQuery(query));
  const [page, setPage] = useState(0);
  const [selected, setSelected] = useState(() => new Set());
  const model = app.model;
  const derived = app.derived;
  const ids = filterDevices(model, derived, sortedIds(model), f);
  const pages = Math.max(1, Math.ceil(ids.length / PAGE));
  const p = Math.min(page, pages - 1);
  const shown = ids.slice(p * PAGE, p * PAGE + PAGE);
  const comps = Object.keys(derived.counts).sort();
  const fleets = [...new Set([...model.devices.values()].map((d) => d.assignment?.fleet).filter(Boolean))].sort();
  const set = (k, v) => {
    setF({ ...f, [k]: v });
    setPage(0);
  };
  const toggle = (id) => {
    const s = new Set(selected);
    if (s.has(id)) s.delete(id);
    else s.add(id);
    setSelected(s);
  };
  const operator = canAct();
  const chosen = [...selected].filter((id) => model.devices.has(id));
  const updateSelected = () => {
    const pairs = pairsFor(chosen, f.component);
    confirmThen(`Update ${pairs.length} component(s) on ${chosen.length} selected device(s) now?`, 'Update', () => updateMany('update selected', pairs));
  };
  const updateAll = () => {
    const pairs = pairsFor(sortedIds(model), f.component);
    confirmThen(`Update all ${pairs.length} outdated or failed component(s)${f.component ? ' of ' + f.component : ''} now?`, 'Update all', () =>
      updateMany('update all outdated', pairs),
    );
  };
  return html`<section>
    <h2>Devices <span class="muted" data-testid="device-count">${ids.length} of ${model.devices.size}</span></h2>
    <div class="filters">
      <input type="search" placeholder="search id, label, fleet" data-testid="filter-search" value=${f.search} onInput=${(e) => set('search', e.currentTarget.value)} />
      <select data-testid="filter-component" value=${f.component} onChange=${(e) => set('component', e.currentTarget.value)}>
        <option value="">all components</option>
        ${comps.map((c) => html`<option value=${c}>${c}</option>`)}
      </select>
      <select data-testid="filter-state" value=${f.state} onChange=${(e) => set('state', e.currentTarget.value)}>
        <option value="">any state</option>
        ${STATES.map((s) => html`<option value=${s}>${STATE_LABELS[s]}</option>`)}
      </select>
      <select data-testid="filter-fleet" value=${f.fleet} onChange=${(e) => set('fleet', e.currentTarget.value)}>
        <option value="">all fleets</option>
        ${fleets.map((x) => html`<option value=${x}>${x}</option>`)}
      </select>
      <input placeholder="label key=value" data-testid="filter-label" value=${f.label} onInput=${(e) => set('label', e.currentTarget.value)} />
      ${['outdated', 'failed', 'offline'].map(
        (k) => html`<label class="check"><input type="checkbox" data-testid=${'filter-' + k} checked=${f[k]} onChange=${(e) => set(k, e.currentTarget.checked)} /> ${k}</label>`,
      )}
    </div>
    ${operator
      ? html`<div class="actions">
          <button data-testid="action-update-selected" disabled=${offline() || chosen.length === 0} onClick=${updateSelected}>Update selected (${chosen.length})</button>
          <button data-testid="action-update-all" disabled=${offline()} onClick=${updateAll}>Update all outdated</button>
          ${chosen.length ? html`<button data-testid="select-none" onClick=${() => setSelected(new Set())}>Clear selection</button>` : null}
        </div>`
      : null}
    <table class="list devices" data-testid="device-table">
      <thead>
        <tr>
          ${operator ? html`<th><input type="checkbox" data-testid="select-page" title="select this page"
            onChange=${(e) => { const s = new Set(selected); for (const id of shown) e.currentTarget.checked ? s.add(id) : s.delete(id); setSelected(s); }} /></th>` : null}
          <th>device</th><th>state</th><th>fleet / wave</th><th>online</th><th>components</th><th>labels</th>
        </tr>
      </thead>
      <tbody>
        ${shown.map((id) => {
          const d = model.devices.get(id);
          const dd = derived.byDevice.get(id);
          return html`<tr key=${id} data-testid="device-row" data-device-id=${id}>
            ${operator ? html`<td><input type="checkbox" data-testid="device-select" checked=${selected.has(id)} onChange=${() => toggle(id)} /></td>` : null}
            <td><a href=${deviceHref(id)} data-testid="device-link">${id}</a></td>
            <td><${StateBadge} state=${dd.worst} /></td>
            <td>${d.assignment ? `${d.assignment.fleet} / ${d.assignment.wave}` : ''}</td>
            <td data-testid="device-online">${d.online === null ? '?' : d.online ? 'online' : 'offline'}</td>
            <td>
              ${Object.entries(dd.states).map(
                ([c, cs]) =>
                  html`<span class="comp" title=${versionTip(c, cs)} data-testid="device-component" data-component=${c} data-state=${cs.state}
                    >${c} <b>${cs.installed || '?'}</b>${cs.needsUpdate ? html` → ${cs.target.version}` : null} <${StateBadge} state=${cs.state} /></span
                  >`,
              )}
            </td>
            <td>${Object.entries(d.labels).map(([k, v]) => html`<span class="label">${k}=${v}</span>`)}</td>
          </tr>`;
        })}
      </tbody>
    </table>
    <div class="pager">
      <button data-testid="page-prev" disabled=${p === 0} onClick=${() => setPage(p - 1)}>‹ prev</button>
      <span data-testid="page-info">page ${p + 1} of ${pages}</span>
      <button data-testid="page-next" disabled=${p >= pages - 1} onClick=${() => setPage(p + 1)}>next ›</button>
    </div>
  </section>`;
}
