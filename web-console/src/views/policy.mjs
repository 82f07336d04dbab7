// Fleets and their policy (docs/protocol.md, "Fleet policy"): per fleet the strategy, a table of
// its waves (selector, thresholds, soak, timeouts, approval, maintenance window, who overrode
// what) from the retained fleets/<fleet>/policy document, the wave offers, and for operators the
// schedules and strategy forms: window_set / window_delete per wave, strategy_set and
// policy_reset per fleet. Replies go to the reply area like every other action.

import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { app, confirmThen, runCommand } from '../store.mjs';
import { Empty, canAct, offline } from './common.mjs';
import {
  ALL_WAVE,
  DAYS,
  describePolicyReply,
  fmtDuration,
  fmtFailureLimit,
  fmtPercent,
  fmtProvenance,
  fmtWindow,
  readPolicyDoc,
  rememberable,
  resetRequest,
  staggeredWaves,
  strategyRequest,
  windowDeleteRequest,
  windowSetRequest,
} from '../fleet-policy.mjs';

// The staggered waves of each fleet as last seen in a staggered document, kept across reconnects
// (the model is dropped on each) so that a fleet switched to all_at_once can be switched back
// with its waves' names known (fleet-policy.mjs, staggeredWaves).
const remembered = new Map();

const STRATEGY_LABELS = {
  staggered: 'staggered waves',
  all_at_once: 'all at once',
};

const send = (label, cmd, fields) => runCommand(label, cmd, fields, { describe: describePolicyReply });

// ---- read-only parts ------------------------------------------------------------------------------

function PolicyCells({ p }) {
  return html`<td>${fmtPercent(p.success_percent)}</td>
    <td>${fmtFailureLimit(p)}</td>
    <td>${p.min_finished === null ? '—' : String(p.min_finished)}</td>
    <td data-testid="policy-soak" data-seconds=${p.soak_s === null ? '' : String(p.soak_s)}>${fmtDuration(p.soak_s)}</td>
    <td>${fmtDuration(p.device_timeout_s)}</td>
    <td data-testid="policy-approval" data-approval=${String(p.approval)}>${p.approval ? 'required' : 'no'}</td>
    <td data-testid="policy-window" data-days=${p.window ? p.window.days.join(' ') : ''} data-start=${p.window ? p.window.start : ''}
      data-end=${p.window ? p.window.end : ''}>${fmtWindow(p.window)}</td>`;
}

const POLICY_HEADS = html`<th>success</th><th>max failures</th><th>min finished</th><th>soak</th><th>device timeout</th><th>approval</th><th>window (UTC)</th>`;

function overrideText(o) {
  const what = o.field === 'window' && o.removed ? 'window removed' : o.field;
  return `${what}: ${fmtProvenance(o)}`;
}

function StrategyLine({ doc }) {
  const source = doc.strategySet ? 'override' : 'config';
  return html`<p>
    ${'strategy '}<b data-testid="policy-strategy" data-strategy=${doc.strategy} data-source=${source}
      >${`${doc.strategy} (${STRATEGY_LABELS[doc.strategy] || 'unknown strategy'}, ${doc.strategySet ? `set by ${fmtProvenance(doc.strategySet)}` : 'from the config file'})`}</b
    >
    ${doc.channel ? html`<span class="muted"> · channel ${doc.channel}</span>` : null}
  </p>`;
}

function ComponentLayers({ doc }) {
  if (!doc.components.length) return null;
  return html`<details>
    <summary>Components with their own policy layers (${doc.components.length})</summary>
    ${doc.components.map(
      (c) => html`<div key=${c.component} data-testid="policy-component" data-component=${c.component}>
        <h5>${c.component}</h5>
        <table class="list">
          <thead><tr><th>wave</th>${POLICY_HEADS}</tr></thead>
          <tbody>
            ${c.waves.map((w) => html`<tr key=${w.wave} data-testid="policy-component-row" data-wave=${w.wave}><td>${w.wave}</td><${PolicyCells} p=${w.policy} /></tr>`)}
          </tbody>
        </table>
      </div>`,
    )}
  </details>`;
}

function UnusedOverrides({ doc }) {
  const unused = doc.overrides.filter((o) => !o.in_use);
  if (!unused.length) return null;
  return html`<p class="muted">Overrides kept but not used by the current strategy or config:</p>
    <ul>
      ${unused.map((o) => html`<li key=${o.key} data-testid="policy-unused-override" data-key=${o.key}>${`${o.key}: ${fmtProvenance(o)}`}</li>`)}
    </ul>`;
}

// ---- operators: the window form of one wave ----------------------------------------------------------

function WindowForm({ fleet, wave, window }) {
  const [days, setDays] = useState(() => new Set(window ? window.days.filter((d) => DAYS.includes(d)) : []));
  const [start, setStart] = useState(window ? window.start : '');
  const [end, setEnd] = useState(window ? window.end : '');
  const [error, setError] = useState('');
  const toggle = (d) => {
    const next = new Set(days);
    if (next.has(d)) next.delete(d);
    else next.add(d);
    setDays(next);
  };
  const save = (e) => {
    e.preventDefault();
    const r = windowSetRequest(fleet, wave, { days, start, end });
    if (!r.ok) return setError(r.message);
    setError('');
    send(`window_set ${fleet}/${wave}`, 'window_set', r.fields);
  };
  const remove = () =>
    confirmThen(
      `Delete the maintenance window of wave ${wave} of fleet ${fleet}? Its devices may then update at any time (also when the config file gives the wave a window).`,
      'Delete window',
      () => send(`window_delete ${fleet}/${wave}`, 'window_delete', windowDeleteRequest(fleet, wave)),
    );
  return html`<form class="filters" data-testid="window-form" data-wave=${wave} onSubmit=${save}>
    <span class="muted">window of ${wave}:</span>
    ${DAYS.map(
      (d) => html`<label class="check" key=${d}>
        <input type="checkbox" data-testid="window-day" value=${d} checked=${days.has(d)} onChange=${() => toggle(d)} />${d}</label
      >`,
    )}
    <span class="muted">(none ticked: every day)</span>
    <label class="check">start <input type="text" data-testid="window-start" size="5" maxlength="5" placeholder="HH:MM" inputmode="numeric"
      value=${start} onInput=${(e) => setStart(e.currentTarget.value)} /></label>
    <label class="check">end <input type="text" data-testid="window-end" size="5" maxlength="5" placeholder="HH:MM" inputmode="numeric"
      value=${end} onInput=${(e) => setEnd(e.currentTarget.value)} /></label>
    <span class="muted">UTC (end before start: ends the next day; start = end: all day)</span>
    <button type="submit" data-testid="window-save" disabled=${offline()}>Save window</button>
    <button type="button" class="danger" data-testid="window-delete" disabled=${offline()} onClick=${remove}>Delete window</button>
    ${error ? html`<span class="err" data-testid="window-error">${error}</span>` : null}
  </form>`;
}

// ---- operators: the strategy form of one fleet ---------------------------------------------------------

/**
 * Strategy and approval. The wave checkboxes are those of the strategy chosen in the select: `all`
 * for all_at_once; for staggered the config's waves (fleet-policy.mjs, staggeredWaves: the
 * document while staggered, else what this page saw of them). "As the config file says" leaves
 * `approval` out of the request, like `ota-ctl strategy-set` without --approval; it starts ticked
 * unless the current approval is an operator's list (for the current strategy; always ticked for
 * the other one), and ticking or unticking a wave unticks it. When the
 * staggered waves' names are not known at all, approval is always left to the config file.
 */
function StrategyForm({ fleet, doc, staggered }) {
  const effective = doc.waves.filter((w) => w.policy.approval).map((w) => w.name);
  const other = doc.strategy === 'staggered' ? 'all_at_once' : 'staggered';
  const memo = remembered.get(fleet);
  const [strategy, setStrategy] = useState(doc.strategy);
  const [error, setError] = useState('');
  // An operator's approval list holds only under the strategy it was given with: for the other
  // strategy the config file's approval is what applies until a list is sent.
  const [fromConfig, setFromConfig] = useState(() => ({
    [doc.strategy]: !doc.waves.some((w) => w.overrides.some((o) => o.field === 'approval')),
    [other]: true,
  }));
  const [checked, setChecked] = useState(() => ({
    [doc.strategy]: new Set(effective),
    [other]: new Set(other === 'staggered' && memo ? memo.approval : []),
  }));
  const waves = strategy === 'all_at_once' ? [ALL_WAVE] : staggered.names;
  const namesUnknown = strategy === 'staggered' && waves.length === 0;
  const useConfig = fromConfig[strategy] !== false || namesUnknown;
  const mine = checked[strategy] || new Set();
  const toggle = (w) => {
    const next = new Set(mine);
    if (next.has(w)) next.delete(w);
    else next.add(w);
    setChecked({ ...checked, [strategy]: next });
    setFromConfig({ ...fromConfig, [strategy]: false });
  };
  const apply = (e) => {
    e.preventDefault();
    const r = strategyRequest(fleet, strategy, useConfig ? null : [...mine], waves);
    if (!r.ok) return setError(r.message);
    setError('');
    send(`strategy_set ${fleet}`, 'strategy_set', r.fields);
  };
  let note;
  if (namesUnknown)
    note = "This page does not know the names of this fleet's staggered waves (no staggered policy, rollout or wave offer of the fleet seen): the request carries no approval list, so the config file decides.";
  else if (useConfig) note = 'The config file decides which waves wait for approval; tick waves to choose them yourself.';
  else note = `Only the ticked waves wait for approval before they open (this replaces the config file's approval while the ${strategy} strategy is in force).`;
  if (strategy === 'staggered' && staggered.source === 'seen')
    note += " The staggered waves' names are taken from rollouts, wave offers and assignments seen; a ticked wave the config no longer has is refused by the controller.";
  return html`<form class="filters" data-testid="strategy-form" onSubmit=${apply}>
    <label class="check">strategy
      <select data-testid="strategy-select" value=${strategy} onChange=${(e) => setStrategy(e.currentTarget.value)}>
        <option value="staggered">staggered waves (the config's waves, one after the other)</option>
        <option value="all_at_once">all at once (one wave "all": every device of the fleet)</option>
      </select></label
    >
    <span class="muted">approval before:</span>
    ${waves.map(
      (w) => html`<label class="check" key=${strategy + '/' + w}>
        <input type="checkbox" data-testid="strategy-approval" value=${w} checked=${mine.has(w)} onChange=${() => toggle(w)} />${w}</label
      >`,
    )}
    <label class="check"
      ><input type="checkbox" data-testid="strategy-approval-config" checked=${useConfig} disabled=${namesUnknown}
        onChange=${() => setFromConfig({ ...fromConfig, [strategy]: !useConfig })} />as the config file says</label
    >
    <button type="submit" class="primary" data-testid="strategy-apply" disabled=${offline()}>Apply</button>
    <span class="muted" data-testid="strategy-note">${note}</span>
    ${error ? html`<span class="err" data-testid="strategy-error">${error}</span>` : null}
  </form>`;
}

function resetFleet(fleet) {
  confirmThen(
    `Drop every override of fleet ${fleet} (maintenance windows, strategy, approval) and go back to the config file?`,
    'Back to config file',
    () => send(`policy_reset ${fleet}`, 'policy_reset', resetRequest(fleet)),
  );
}

// ---- one fleet -------------------------------------------------------------------------------------------

function FleetPolicy({ fleet, raw, offers }) {
  const m = app.model;
  const operator = canAct();
  const doc = raw ? readPolicyDoc(raw, fleet) : null;
  const keep = rememberable(doc);
  if (keep) remembered.set(fleet, keep);
  const staggered = staggeredWaves({
    doc,
    remembered: remembered.get(fleet) || null,
    rollouts: [...m.rollouts.values()].filter((r) => r.fleet === fleet),
    offers: offers.map((w) => w.wave),
    assignments: [...m.devices.values()].filter((d) => d.assignment && d.assignment.fleet === fleet).map((d) => d.assignment.wave),
  });
  const cols = 10;
  return html`<article class="card" data-testid="fleet-policy" data-fleet=${fleet}>
    <h3>${fleet}</h3>
    ${!doc
      ? html`<${Empty} text="No policy published for this fleet (the controller's config file applies)." />`
      : html`<${StrategyLine} doc=${doc} />
          <table class="list" data-testid="policy-waves">
            <thead><tr><th>wave</th><th>devices</th>${POLICY_HEADS}<th>overridden</th></tr></thead>
            <tbody>
              ${doc.waves.map((w) => {
                const row = html`<tr key=${'w/' + w.name} data-testid="policy-wave-row" data-wave=${w.name}>
                  <td><b>${w.name}</b></td>
                  <td>${w.select}</td>
                  <${PolicyCells} p=${w.policy} />
                  <td data-testid="policy-overrides">${w.overrides.length ? w.overrides.map(overrideText).join('; ') : html`<span class="muted">none</span>`}</td>
                </tr>`;
                if (!operator) return row;
                return [
                  row,
                  html`<tr key=${'f/' + w.name}>
                    <td colspan=${cols}>
                      <${WindowForm} key=${`${w.name}|${fmtWindow(w.policy.window)}`} fleet=${fleet} wave=${w.name} window=${w.policy.window} />
                    </td>
                  </tr>`,
                ];
              })}
            </tbody>
          </table>
          ${doc.waves.length === 0 ? html`<${Empty} text="The document lists no wave." />` : null}
          <${ComponentLayers} doc=${doc} />
          <${UnusedOverrides} doc=${doc} />
          ${operator
            ? html`<h4>Strategy</h4>
                <${StrategyForm}
                  key=${`${doc.strategy}|${fmtProvenance(doc.strategySet)}|${doc.waves.map((w) => w.name + ':' + w.policy.approval).join(',')}`}
                  fleet=${fleet} doc=${doc} staggered=${staggered} />
                <div class="actions">
                  <button class="danger" data-testid="policy-reset" disabled=${offline()} onClick=${() => resetFleet(fleet)}>Back to config file</button>
                  <span class="muted">drops every window and strategy override of the fleet</span>
                </div>`
            : null}`}
    <h4>Wave offers</h4>
    ${offers.length === 0
      ? html`<${Empty} text="none" />`
      : html`<ul>${offers.map((w) => html`<li key=${w.wave + '/' + w.component}>${w.wave} · ${w.component}: ${w.release ? w.release.version : '?'} (${w.state}, ${w.rollout})</li>`)}</ul>`}
  </article>`;
}

export function PolicyView() {
  const m = app.model;
  const fleets = new Set(m.policies.keys());
  for (const w of m.waves.values()) fleets.add(w.fleet);
  for (const d of m.devices.values()) if (d.assignment?.fleet) fleets.add(d.assignment.fleet);
  const list = [...fleets].sort();
  return html`<section>
    <h2>Fleets and policy</h2>
    <p class="muted">Times are UTC. ${canAct() ? 'Changes are overrides over the controller\'s config file; the reply below says what each live rollout does with them.' : ''}</p>
    ${list.length === 0 ? html`<${Empty} text="No fleet seen yet." />` : null}
    ${list.map((f) => {
      const offers = [...m.waves.values()].filter((w) => w.fleet === f).sort((a, b) => (a.wave + a.component < b.wave + b.component ? -1 : 1));
      return html`<${FleetPolicy} key=${f} fleet=${f} raw=${m.policies.get(f)} offers=${offers} />`;
    })}
  </section>`;
}
