/* A unit's atlas card (lstm_interp/analysis/atlas_cards.py: the JSON of one unit) drawn into the DOM: its top and
 * bottom contexts as text coloured by the unit's value, its histogram, its features with their controls, what it
 * does to the output and its gate habits. One renderer for the atlas's unit pages and the live explorer's card, so
 * that both show a unit the same way. A classic script (pages open from disk too) that defines one global,
 *
 *   globalThis.lstmInterpAtlasCard = { render(card, meta, options) -> Element, shownName(card), legend(label) }
 *
 * after colours.js (globalThis.lstmInterpColours). Every text enters the DOM through textContent only. */
(() => {
  "use strict";
  const { colourAt, codes: COLOURS } = globalThis.lstmInterpColours;
  const SVG = "http://www.w3.org/2000/svg";
  // How invisible characters are drawn inside a passage: as visible stand-ins, so a newline has a coloured cell.
  const SHOWN = { "\n": "⏎", "\t": "→", "\r": "␍" };

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  const fixed = (x, digits = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
  const signed = (x, digits = 2) => (x === null || x === undefined ? "–" : `${x >= 0 ? "+" : "−"}${Math.abs(x).toFixed(digits)}`);
  const percent = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`);
  const quoted = (c) => JSON.stringify(c);

  // What the pictures colour for a quantity: tanh(c) for the cell state, 2g − 1 for a gate, else the value.
  function shownName(card) {
    if (card.kind === "unbounded") return `tanh(${card.quantity === "cell" ? "c" : card.quantity})`;
    if (card.kind === "gate") return `2·${card.quantity} − 1`;
    return card.quantity;
  }

  function decode(base64) {
    const raw = atob(base64);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  // One context: the passage, each character on the colour of the unit's value there, the peak outlined.
  function passage(context) {
    const codes = decode(context.codes);
    const box = el("span", undefined, "passage");
    [...context.text].forEach((char, i) => {
      const span = el("span", SHOWN[char] || char);
      if (SHOWN[char]) span.classList.add("ctl");
      span.style.backgroundColor = COLOURS[codes[i]];
      span.title = `${(codes[i] / 127.5 - 1).toFixed(2)}`;
      if (i === context.peak) span.classList.add("peak");
      box.appendChild(span);
    });
    return box;
  }

  function contexts(card, side, limit, meta) {
    const list = card[side].slice(0, limit);
    const section = el("section", undefined, `contexts ${side}`);
    const heading = side === "top" ? "Highest" : "Lowest";
    section.appendChild(el("h3", `${heading} ${list.length} of ${card.found[side]} found (k = ${meta.k}; one peak per ` +
      `passage, ±${meta.window} characters)`));
    if (!list.length) section.appendChild(el("p", "none: the corpus holds no peak of this unit", "muted"));
    const rows = el("ol", undefined, "context-list");
    for (const context of list) {
      const row = el("li");
      row.append(el("span", fixed(context.shown, 2), "value"), passage(context),
        el("span", `@${context.position.toLocaleString("en")}`, "position"));
      row.title = `raw value ${context.value} at character ${context.position}`;
      rows.appendChild(row);
    }
    section.appendChild(rows);
    return section;
  }

  function histogram(card, meta) {
    const counts = card.histogram, total = counts.reduce((a, b) => a + b, 0);
    const width = 320, height = 90, base = 72, bar = width / counts.length;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("class", "histogram");
    svg.setAttribute("role", "img");
    const peak = Math.max(1, ...counts);
    counts.forEach((n, b) => {
      const x = -1 + (b + 0.5) * (2 / counts.length);
      const rect = document.createElementNS(SVG, "rect");
      const h = n ? Math.max(1, (base - 4) * n / peak) : 0;
      rect.setAttribute("x", String(b * bar + 0.5));
      rect.setAttribute("width", String(bar - 1));
      rect.setAttribute("y", String(base - h));
      rect.setAttribute("height", String(h));
      rect.setAttribute("fill", colourAt(x));
      rect.setAttribute("stroke", "#8c959f");
      rect.setAttribute("stroke-width", "0.5");
      const tip = document.createElementNS(SVG, "title");
      tip.textContent = `${(x - 1 / counts.length).toFixed(2)} .. ${(x + 1 / counts.length).toFixed(2)}: ${n} steps`;
      rect.appendChild(tip);
      svg.appendChild(rect);
    });
    [[-1, "−1"], [0, "0"], [1, "+1"]].forEach(([x, label]) => {
      const text = document.createElementNS(SVG, "text");
      text.setAttribute("x", String(Math.min(width - 8, Math.max(8, (x + 1) / 2 * width))));
      text.setAttribute("y", String(height - 4));
      text.setAttribute("text-anchor", "middle");
      text.textContent = label;
      svg.appendChild(text);
    });
    const section = el("section", undefined, "distribution");
    section.appendChild(el("h3", `${shownName(card)} over the corpus (${total.toLocaleString("en")} characters)`));
    section.appendChild(svg);
    const note = `saturated (|value| ≥ ${meta.pinned_level}) ${percent(card.saturation)} of the steps` +
      (card.pinned ? " · pinned: one flat deep band on the feature sample, its colour barely moves" : "");
    section.appendChild(el("p", note, card.pinned ? "note" : "muted"));
    return section;
  }

  function features(card, limit, meta) {
    const section = el("section", undefined, "features");
    section.appendChild(el("h3", `Features (first ${meta.features.chars.toLocaleString("en")} characters; ` +
      "find_cells's ranking rule)"));
    if (!card.features.length) {
      section.appendChild(el("p", "no feature could be scored on the sample", "muted"));
      return section;
    }
    const table = el("table", undefined, "feature-table");
    const head = el("tr");
    ["feature", "score", "Δ colour", "controls (score / given)", ""].forEach((h) => head.appendChild(el("th", h)));
    table.appendChild(head);
    for (const row of card.features.slice(0, limit)) {
      const tr = el("tr");
      if (!row.visible) tr.className = "flat";
      const metric = row.metric === "auc" ? "AUC" : "|r|";
      const controls = (row.controls || []).map((c) => `${c.control} ${fixed(c.score, 2)} / ${fixed(c.partial, 2)}`);
      // The ranking rule's verdict: only a row that switches, beats its controls and is strong enough explains.
      const verdict = !row.visible ? "flat" : row.controls && !row.beats_controls ? "beaten by a control"
        : row.strength < meta.features.explains_strength ? "weak" : "explains";
      tr.append(el("td", row.feature, "name"), el("td", `${metric} ${fixed(row.score, 3)} ${row.sign > 0 ? "+" : "−"}`),
        el("td", signed(row.effect)), el("td", controls.join(", ") || "–"), el("td", verdict, "verdict"));
      table.appendChild(tr);
    }
    section.appendChild(table);
    return section;
  }

  function charList(items, key, digits) {
    return items.map((item) => `${quoted(item.char)} ${signed(item[key], digits)}` +
      (item.count !== undefined ? ` (×${item.count})` : "")).join(", ") || "none";
  }

  function output(card, meta) {
    const section = el("section", undefined, "output");
    section.appendChild(el("h3", "What it does to the output"));
    if (card.readout) {
      section.appendChild(el("p", `when positive (blue) its hidden state raises the logits of ` +
        `${charList(card.readout.raised, "weight", 2)}; and lowers ${charList(card.readout.lowered, "weight", 2)}` +
        " (head weights; the reverse when negative)"));
    } else {
      section.appendChild(el("p", "not a last-layer unit: it reaches the output only through later layers", "muted"));
    }
    if (card.ablation) {
      const a = card.ablation;
      section.appendChild(el("p", `zeroed on the first ${meta.ablation.chars.toLocaleString("en")} characters: loss ` +
        `${signed(a.delta_loss, 4)} nats/char; most hurt next characters ${charList(a.hurt, "delta", 3)}; ` +
        `helped ${charList(a.helped, "delta", 3)}`));
    } else {
      section.appendChild(el("p", "not ablated (no ablation sample)", "muted"));
    }
    return section;
  }

  function gates(card) {
    const section = el("section", undefined, "gates");
    section.appendChild(el("h3", "Gate habits (whole corpus)"));
    const g = card.gates;
    if (!g) {
      section.appendChild(el("p", "a plain RNN has no gates", "muted"));
      return section;
    }
    const kind = g.memory_mean === null ? "" : g.memory_mean >= 0.9 ? "an integrator: it keeps its state"
      : g.memory_mean <= 0.5 ? "a resetter: it forgets its state within a few steps" : "it keeps part of its state";
    section.appendChild(el("p", `mean ${g.memory_gate} ${fixed(g.memory_mean, 3)}: ${kind}; writes ` +
      `(${g.write_gate}) on ${percent(g.write_fraction)} of the steps`));
    return section;
  }

  // The card: options.compact (the explorer's side panel) shows fewer contexts and feature rows.
  function render(card, meta, options = {}) {
    const compact = Boolean(options.compact);
    const root = el("div", undefined, compact ? "atlas-card compact" : "atlas-card");
    root.dataset.layer = card.layer;
    root.dataset.unit = String(card.unit);
    const best = card.features[0];
    const summary = card.explained
      ? `explained by ${best.feature} (${best.metric === "auc" ? "AUC" : "|r|"} ${fixed(best.score, 3)}, ` +
        `Δ colour ${signed(best.effect)})`
      : "hard to tell: no registered feature explains it";
    const head = el("div", undefined, "card-head");
    head.append(el("b", `${card.layer}:${card.unit}`), ` ${shownName(card)} · `,
      el("span", summary, card.explained ? "explained" : "hard"));
    if (card.pinned) head.append(" ", el("span", "pinned", "tag"));
    root.appendChild(head);
    root.appendChild(contexts(card, "top", compact ? 5 : card.top.length, meta));
    root.appendChild(contexts(card, "bottom", compact ? 3 : card.bottom.length, meta));
    root.appendChild(histogram(card, meta));
    root.appendChild(features(card, compact ? 3 : card.features.length, meta));
    root.appendChild(output(card, meta));
    root.appendChild(gates(card));
    return root;
  }

  // The colour scale's key, -1 red .. +1 blue, labelled with what is coloured.
  function legend(label) {
    const box = el("span", undefined, "legend");
    const bar = el("span", undefined, "legend-bar");
    bar.style.background = `linear-gradient(to right, ${COLOURS.filter((_, b) => b % 17 === 0).join(", ")})`;
    box.append(`${label}: −1 `, bar, " +1");
    return box;
  }

  globalThis.lstmInterpAtlasCard = Object.freeze({ render, shownName, legend });
})();
