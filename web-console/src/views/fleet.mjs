// Fleet overview: per component, how many devices are in each state; the latest releases.

import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { STATES, STATE_LABELS, fleetCounts, summaryCounts } from '../derive.mjs';
import { app } from '../store.mjs';
import { Empty, fmtTime } from './common.mjs';

export function FleetView() {
  const [fleet, setFleet] = useState('');
  const m = app.model;
  // While the retained state is still arriving the page's own counts are partial: the
  // controller's summary stands in for them (store.mjs, "loading").
  const summary = app.loading ? m.summary : null;
  const fromSummary = summaryCounts(summary, fleet);
  const fleets = [
    ...new Set([...m.devices.values()].map((d) => d.assignment?.fleet).concat(summary ? Object.keys(summary.fleets) : []).filter(Boolean)),
  ].sort();
  const counts = fromSummary || (fleet ? fleetCounts(m, app.derived, fleet) : app.derived.counts);
  const comps = Object.keys(counts).sort();
  const fq = fleet ? `&fleet=${encodeURIComponent(fleet)}` : '';
  const releases = [...m.releases.values()].sort((a, b) => (a.component + a.channel < b.component + b.channel ? -1 : 1));
  return html`<section>
    <h2>Fleet <span class="muted">${fromSummary ? summary.devices : m.devices.size} devices</span></h2>
    <div class="filters">
      <select data-testid="fleet-select" value=${fleet} onChange=${(e) => setFleet(e.currentTarget.value)}>
        <option value="">all fleets</option>
        ${fleets.map((f) => html`<option value=${f}>${f}</option>`)}
      </select>
    </div>
    ${comps.length === 0
      ? html`<${Empty} text="No device or release seen yet." />`
      : html`<table class="counts" data-testid="fleet-counts" data-source=${fromSummary ? 'summary' : 'live'}>
          <thead>
            <tr>
              <th>component</th>
              ${STATES.map((s) => html`<th class=${'st-h-' + s}>${STATE_LABELS[s]}</th>`)}
              <th>devices</th>
            </tr>
          </thead>
          <tbody>
            ${comps.map(
              (c) => html`<tr key=${c} data-testid="fleet-row" data-component=${c}>
                <th>${c}</th>
                ${STATES.map(
                  (s) =>
                    html`<td class=${counts[c][s] ? 'st-c-' + s : 'zero'}>
                      <a href=${`#/devices?component=${encodeURIComponent(c)}&state=${s}${fq}`} data-testid="fleet-count" data-component=${c} data-state=${s}
                        >${counts[c][s]}</a
                      >
                    </td>`,
                )}
                <td data-testid="fleet-total" data-component=${c}>${counts[c].total}</td>
              </tr>`,
            )}
          </tbody>
        </table>`}
    ${fromSummary
      ? html`<p class="muted" data-testid="counts-source">
          Counts from the controller's summary of ${fmtTime(summary.at)}; the page is still taking in the devices
          (${m.devices.size} of ${summary.devices}).
        </p>`
      : null}
    <h3>Releases</h3>
    ${releases.length === 0
      ? html`<${Empty} text="No release published yet." />`
      : html`<table class="list" data-testid="releases">
          <thead><tr><th>component</th><th>channel</th><th>version</th><th>scheme</th><th>created</th></tr></thead>
          <tbody>
            ${releases.map(
              (r) => html`<tr key=${r.component + '/' + r.channel} data-testid="release-row" data-component=${r.component} data-channel=${r.channel}>
                <td>${r.component}</td><td>${r.channel}</td><td data-testid="release-version">${r.version}</td><td>${r.scheme}</td><td>${fmtTime(r.created)}</td>
              </tr>`,
            )}
          </tbody>
        </table>`}
    ${m.malformed ? html`<p class="muted" data-testid="malformed">${m.malformed} malformed messages ignored (last: ${m.lastMalformed})</p>` : null}
  </section>`;
}
