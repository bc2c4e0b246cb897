/* The atlas's index page: one sortable table of every unit (click a header to sort by it, again to reverse), a filter
 * for the "hard to tell" units and one per layer, each row linking to the unit's page. The rows come from the page's
 * #atlas-rows JSON, written by lstm_interp/report/atlas_pages.py, in its order: units that a feature explains and that
 * are not pinned first, strongest first. Text enters the DOM through textContent only. */
(() => {
  "use strict";
  const { codes: COLOURS } = globalThis.lstmInterpColours;
  const $ = (id) => document.getElementById(id);
  const rows = JSON.parse($("atlas-rows").textContent);
  const meta = JSON.parse($("atlas-meta").textContent);
  const SHOWN = { "\n": "⏎", "\t": "→", "\r": "␍" };
  const state = { key: "rank", descending: false };
  window.lstmAtlas = { renders: 0, rows };

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (className) node.className = className;
    return node;
  }
  const fixed = (x, d) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));
  const signed = (x, d) => (x === null || x === undefined ? "–" : `${x >= 0 ? "+" : "−"}${Math.abs(x).toFixed(d)}`);
  const percent = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`);

  function snippet(s) {
    const box = el("span", undefined, "passage");
    if (!s) return box;
    const raw = atob(s.codes);
    [...s.text].forEach((char, i) => {
      const span = el("span", SHOWN[char] || char);
      if (SHOWN[char]) span.classList.add("ctl");
      span.style.backgroundColor = COLOURS[raw.charCodeAt(i)];
      if (i === s.peak) span.classList.add("peak");
      box.appendChild(span);
    });
    return box;
  }

  const memory = meta.gates ? `mean ${meta.gates.memory_gate.replace("_gate", "")} gate` : "memory gate";
  // [key, header, cell(row) -> node or text, sort value(row)]
  const COLUMNS = [
    ["rank", "#", (r) => String(r.rank + 1), (r) => r.rank],
    ["unit", "unit", (r) => {
      const a = el("a", `${r.layer}:${r.unit}`);
      a.href = r.href;
      return a;
    }, (r) => r.order],
    ["feature", "best feature", (r) => r.feature || "–", (r) => r.feature],
    ["strength", "strength", (r) => fixed(r.strength, 3), (r) => r.strength],
    ["effect", "Δ colour", (r) => signed(r.effect, 2), (r) => (r.effect === null ? null : Math.abs(r.effect))],
    ["explained", "explained", (r) => (r.explained ? "yes" : "hard to tell"), (r) => (r.explained ? 1 : 0)],
    ["saturation", "saturated", (r) => percent(r.saturation) + (r.pinned ? " pinned" : ""), (r) => r.saturation],
    ["delta_loss", "Δ loss zeroed", (r) => signed(r.delta_loss, 4), (r) => r.delta_loss],
    ["memory_mean", memory, (r) => fixed(r.memory_mean, 3), (r) => r.memory_mean],
    ["write_fraction", "writes", (r) => percent(r.write_fraction), (r) => r.write_fraction],
    ["raised", "raises", (r) => (r.raised === null ? "–" : JSON.stringify(r.raised)), (r) => r.raised],
    ["snippet", "highest passage", (r) => snippet(r.snippet), null],
  ];

  function compare(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1; // missing values last, whichever the direction
    if (b === null || b === undefined) return -1;
    return a < b ? -1 : 1;
  }

  function header() {
    const tr = el("tr");
    for (const [key, label, , value] of COLUMNS) {
      const th = el("th", label);
      th.dataset.key = key;
      if (value) {
        th.classList.add("sortable");
        th.title = "click to sort; again to reverse";
        th.addEventListener("click", () => {
          state.descending = state.key === key ? !state.descending : key !== "rank" && key !== "unit" && key !== "feature";
          state.key = key;
          draw();
        });
        if (state.key === key) th.classList.add(state.descending ? "desc" : "asc");
      }
      tr.appendChild(th);
    }
    return tr;
  }

  function draw() {
    const hardOnly = $("hard-only").checked, layer = $("layer-filter").value;
    const value = COLUMNS.find(([key]) => key === state.key)[3];
    const shown = rows.filter((r) => (!hardOnly || !r.explained) && (!layer || r.layer === layer));
    shown.sort((a, b) => {
      const va = value(a), vb = value(b);
      if (va === null || va === undefined || vb === null || vb === undefined) return compare(va, vb);
      return (state.descending ? -1 : 1) * compare(va, vb) || a.rank - b.rank;
    });
    const body = el("tbody");
    for (const r of shown) {
      const tr = el("tr");
      if (!r.explained) tr.classList.add("hard");
      if (r.pinned) tr.classList.add("pinned");
      tr.dataset.layer = r.layer;
      tr.dataset.unit = String(r.unit);
      for (const [key, , cell] of COLUMNS) {
        const td = el("td", undefined, key);
        const content = cell(r);
        if (typeof content === "string") td.textContent = content;
        else td.appendChild(content);
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    const table = $("units");
    table.replaceChildren(el("thead"), body);
    table.firstChild.appendChild(header());
    $("count").textContent = `showing ${shown.length} of ${rows.length} units`;
    window.lstmAtlas.renders += 1;
    document.body.dataset.renders = String(window.lstmAtlas.renders);
  }

  const hard = rows.filter((r) => !r.explained).length;
  $("hard-label").textContent = `only the hard-to-tell units (${hard} of ${rows.length}: no feature explains them)`;
  for (const name of [...new Set(rows.map((r) => r.layer))]) {
    const option = el("option", name);
    option.value = name;
    $("layer-filter").appendChild(option);
  }
  const atlasCard = globalThis.lstmInterpAtlasCard;
  $("legend").replaceChildren(atlasCard.legend(atlasCard.shownName({ kind: meta.kind, quantity: meta.quantity })));
  $("hard-only").addEventListener("change", draw);
  $("layer-filter").addEventListener("change", draw);
  draw();
})();
