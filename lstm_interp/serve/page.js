// The live explorer's page: trace what is typed, colour each character by one unit, list the units that track the
// registered features, intervene on a unit, and select & match a span (LSTMVis's rules) of the text or a corpus.
// With a unit atlas (lstm-interp serve --atlas DIR), the shown unit's atlas card is drawn under the text
// (lstm_interp/report/atlas_card.js, the atlas pages' own renderer). Under the text, "read and predict" draws the
// blog's figure over the typed text: the shown unit's colour and the model's top-5 next-character guesses under each
// character (lstm_interp/report/predict_rows.js, the HTML report's own renderer). Every text (typed, traced, from a
// corpus or an atlas) enters the DOM through textContent only, never as markup.
(() => {
  "use strict";

  // The report's diverging scale, shared with it (lstm_interp/report/colours.js): -1 red, 0 white, +1 blue.
  const { colourAt, codes: COLOURS } = globalThis.lstmInterpColours;
  const DEBOUNCE_MS = 150;
  // The feature list waits for a pause in typing: on a few cores its work would otherwise delay the next trace.
  const FEATURES_AFTER_MS = 500;
  // Read and predict covers the first PREDICT_CHARS characters of the text, PREDICT_PER_LINE columns to a block.
  const PREDICT_CHARS = 200;
  const PREDICT_PER_LINE = 50;

  const $ = (id) => document.getElementById(id);
  const input = $("input"), textBox = $("text"), status = $("status"), tip = $("tip");
  const layerSel = $("layer"), quantitySel = $("quantity"), unitInput = $("unit");
  const selectStatus = $("select-status"), matchList = $("matches");
  const featureBox = $("features"), featureStatus = $("features-status"), chips = $("interventions");
  const opened = $("opened");
  const state = { info: null, initial: null, result: null, codes: null, column: [], seq: 0, featureSeq: 0, timer: 0,
    featureTimer: 0, interventions: [], lastRenderMs: 0, lastTraceMs: 0, atlasKey: null, atlasSeq: 0,
    // This page's session (a random id): the server keeps its last traced text and retraces from the first changed
    // character; `version` names the trace response the page holds, so the server may send only the steps after it.
    session: Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join(""),
    version: null };
  window.lstmExplorer = { renders: 0, traces: 0, atlasCards: 0, predictRenders: 0, partialTraces: 0, state };
  document.body.dataset.renders = "0";

  function setStatus(el, message, isError) {
    el.textContent = message;
    el.classList.toggle("error", Boolean(isError));
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || `${path}: HTTP ${response.status}`);
    return data;
  }

  function element(tag, text, className) {
    const el = document.createElement(tag);
    if (text !== undefined) el.textContent = text;
    if (className) el.className = className;
    return el;
  }

  function option(select, value) {
    const el = element("option", value);
    el.value = value;
    select.appendChild(el);
  }

  const shownChar = (c) => JSON.stringify(c);

  // "name[unit] = value" of a code byte, in the quantity's own terms: a gate's 0..1, a state's -1..1, and for the
  // cell state (any real) the tanh it is shown by, as in Karpathy et al.
  function describe(code, label) {
    const x = code / 127.5 - 1;
    const kind = state.info.kinds[state.result.quantity];
    if (kind === "gate") return `${label} = ${((x + 1) / 2).toFixed(3)}`;
    if (kind === "unbounded") return `tanh(${label}) = ${x.toFixed(3)}`;
    return `${label} = ${x.toFixed(3)}`;
  }

  function unit() {
    const n = Number(unitInput.value);
    const H = state.info ? state.info.hidden_size : 1;
    return Number.isInteger(n) && n >= 0 && n < H ? n : 0;
  }

  function legend() {
    const gate = state.info && state.info.kinds[quantitySel.value] === "gate";
    $("legend-low").textContent = gate ? "0" : "−1";
    $("legend-high").textContent = gate ? "1" : "+1";
    $("legend-bar").style.background = `linear-gradient(to right, ${COLOURS.filter((_, b) => b % 17 === 0).join(", ")})`;
  }

  // ---------------------------------------------------------------------------------------- the traced text
  function build(result) {
    // Rebuilt per trace: a few thousand spans at most (max_text_chars), each with its character as textContent.
    const unknown = new Set(result.unknown);
    state.column = [];
    let k = 0;
    const frag = document.createDocumentFragment();
    result.chars.forEach((char, i) => {
      const span = element("span", char);
      span.dataset.i = String(i);
      if (unknown.has(i)) {
        span.className = "unknown";
        span.title = "outside the vocabulary: skipped";
        state.column.push(-1);
      } else {
        state.column.push(k++);
      }
      frag.appendChild(span);
    });
    textBox.replaceChildren(frag);
  }

  function recolour() {
    const { result, codes } = state;
    if (!result) return;
    const started = performance.now();
    const T = result.steps, row = unit() * T;
    const spans = textBox.children;
    for (let i = 0; i < spans.length; i++) {
      const k = state.column[i];
      spans[i].style.backgroundColor = k < 0 ? "" : COLOURS[codes[row + k]];
    }
    state.lastRenderMs = performance.now() - started;
    window.lstmExplorer.renders += 1;
    document.body.dataset.renders = String(window.lstmExplorer.renders);
    markCurrentUnit();
    renderPredict();
    atlasCardNow();
  }

  // ---------------------------------------------------------------------------------------- read and predict
  // The blog's figure over the typed text (its first PREDICT_CHARS characters): under each character the shown
  // unit's colour and the top-5 guesses for the next character the model reads. A character outside the vocabulary
  // is struck through, with no value and no guesses: the model skips it, so what "came next" is the next known one.
  function renderPredict() {
    const box = $("predict"), caption = $("predict-caption"), { result, codes } = state;
    if (!result) {
      box.replaceChildren();
      caption.textContent = "";
      return;
    }
    const n = Math.min(result.chars.length, PREDICT_CHARS), T = result.steps, u = unit(), column = state.column;
    const next = new Array(n).fill(null);
    let following = null; // the next known character after position i, over the whole text
    for (let i = result.chars.length - 1; i >= 0; i--) {
      if (i < n) next[i] = following;
      if (column[i] >= 0) following = result.chars[i];
    }
    const where = Array.from({ length: n }, (_, i) => i);
    const label = `${result.layer}.${result.quantity}[${u}]`;
    box.replaceChildren(globalThis.lstmInterpPredictRows.render({
      chars: result.chars.slice(0, n),
      codes: where.map((i) => (column[i] < 0 ? -1 : codes[u * T + column[i]])),
      top: where.map((i) => (column[i] < 0 ? null : result.top[column[i]])),
      next, k: Math.max(0, ...result.top.map((row) => row.length)), unitLabel: `unit ${u}`,
      describe: (i) => describe(codes[u * T + column[i]], label),
      unknown: new Set(where.filter((i) => column[i] < 0)), perLine: PREDICT_PER_LINE,
      note: `unit row: ${label}, ` + (state.info.kinds[result.quantity] === "gate"
        ? "0 red · 0.5 white · 1 blue" : "−1 red · 0 white · +1 blue"),
    }));
    const cut = result.chars.length > n
      ? `the first ${n} of the text's ${result.chars.length.toLocaleString("en")} characters`
      : `all ${n} characters`;
    const acting = result.interventions ? ` · guesses under the ${result.interventions} intervention(s)` : "";
    caption.textContent = `the shown unit and the model's top-5 guesses for the next character, under each ` +
      `character · ${cut}${acting}`;
    window.lstmExplorer.predictRenders += 1;
    document.body.dataset.predictRenders = String(window.lstmExplorer.predictRenders);
  }

  // ---------------------------------------------------------------------------------------- the atlas card
  // The shown unit's card, fetched when the unit or layer changes (GET /api/atlas/{layer}/{unit}: no model work).
  async function atlasCardNow() {
    if (!state.info || !state.info.atlas) return;
    const layer = layerSel.value, u = unit(), key = `${layer}:${u}`;
    if (key === state.atlasKey) return;
    state.atlasKey = key;
    const seq = ++state.atlasSeq;
    const box = $("atlas-card"), status = $("atlas-status");
    $("atlas-title").textContent = `Atlas card of ${key}`;
    if (!state.info.atlas.layers.includes(layer)) {
      box.replaceChildren();
      setStatus(status, `the atlas describes ${state.info.atlas.layers.join(", ")}, not ${layer}`);
      return;
    }
    try {
      const response = await fetch(`/api/atlas/${encodeURIComponent(layer)}/${u}`);
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || `atlas: HTTP ${response.status}`);
      if (seq !== state.atlasSeq) return; // another unit was chosen meanwhile
      box.replaceChildren(globalThis.lstmInterpAtlasCard.render(data.card, data.meta, { compact: true }));
      const corpus = state.info.atlas.steps.toLocaleString("en");
      setStatus(status, `over the atlas's corpus (${corpus} characters), of ${data.card.quantity}; ` +
        "the highest and lowest passages, coloured by this unit");
      window.lstmExplorer.atlasCards += 1;
      document.body.dataset.atlasCard = key;
    } catch (err) {
      if (seq === state.atlasSeq) setStatus(status, String(err.message || err), true);
    }
  }

  function lossText(result) {
    if (result.loss === null) return "";
    if (!result.interventions) return ` · loss ${result.loss.toFixed(3)} nats/char`;
    const delta = result.loss - result.base_loss;
    return ` · loss ${result.base_loss.toFixed(3)} → ${result.loss.toFixed(3)} nats/char ` +
      `(${delta >= 0 ? "+" : ""}${delta.toFixed(3)}) under ${result.interventions} intervention(s)`;
  }

  async function traceNow() {
    const text = input.value;
    const seq = ++state.seq;
    const asked = performance.now();
    if (!text) {
      state.result = null;
      textBox.replaceChildren();
      featureBox.replaceChildren();
      renderPredict();
      setStatus(status, "type a text to trace");
      return;
    }
    try {
      const result = await post("/api/trace", {
        text, layer: layerSel.value, quantity: quantitySel.value, interventions: state.interventions,
        session: state.session, base: state.version,
      });
      if (seq !== state.seq) return; // a later keystroke's trace is on its way (the next request names no base)
      const raw = atob(result.values);
      // A plain loop: Uint8Array.from(raw, mapFn) was most of the page's own time per trace (RESULTS.md).
      const fresh = new Uint8Array(raw.length);
      for (let i = 0; i < raw.length; i++) fresh[i] = raw.charCodeAt(i);
      if (result.from > 0) spliceSteps(result, fresh);
      else state.codes = fresh;
      state.version = result.version;
      state.result = result;
      build(result);
      recolour();
      state.lastTraceMs = performance.now() - asked; // request, server, decoding, DOM rebuild and recolouring
      window.lstmExplorer.traces += 1;
      const skipped = result.unknown.length
        ? ` · ${result.unknown.length} character(s) outside the vocabulary skipped (struck through): ` +
          result.unknown_chars.map(shownChar).join(" ") : "";
      setStatus(status, `${result.steps} characters traced in ${result.server_ms.toFixed(1)} ms${lossText(result)}${skipped}`);
      clearTimeout(state.featureTimer);
      state.featureTimer = setTimeout(() => featuresNow(text, seq), FEATURES_AFTER_MS);
    } catch (err) {
      if (seq === state.seq) setStatus(status, String(err.message || err), true);
    }
  }

  // The server sent steps `from`..T only (the page held the session's last response, `base`): keep the steps
  // before `from` of each unit's row, and of the top-5 rows, from what the page holds.
  function spliceSteps(result, fresh) {
    const from = result.from, T = result.steps, oldT = state.result.steps, H = result.hidden_size;
    const codes = new Uint8Array(H * T), tail = T - from;
    for (let u = 0; u < H; u++) {
      codes.set(state.codes.subarray(u * oldT, u * oldT + from), u * T);
      codes.set(fresh.subarray(u * tail, (u + 1) * tail), u * T + from);
    }
    state.codes = codes;
    result.top = state.result.top.slice(0, from).concat(result.top);
    window.lstmExplorer.partialTraces += 1;
  }

  function scheduleTrace() {
    setStatus(opened, ""); // it told where the opening passage came from: an edited text is the reader's own
    clearTimeout(state.timer);
    clearTimeout(state.featureTimer);
    state.timer = setTimeout(traceNow, DEBOUNCE_MS);
  }

  function topText(rows) {
    return rows.map(([c, p]) => `${shownChar(c)} ${p.toFixed(3)}`).join(", ");
  }

  textBox.addEventListener("mouseover", (event) => {
    const span = event.target.closest("#text span");
    if (!span || !state.result) return;
    for (const el of textBox.querySelectorAll("span.hover")) el.classList.remove("hover");
    span.classList.add("hover");
    const i = Number(span.dataset.i), k = state.column[i], result = state.result;
    const shown = shownChar(result.chars[i]);
    if (k < 0) {
      tip.textContent = `${shown}: outside the vocabulary, not traced`;
      return;
    }
    const value = describe(state.codes[unit() * result.steps + k], `${result.layer}.${result.quantity}[${unit()}]`);
    tip.replaceChildren(`${shown} · ${value}\nnext: ${topText(result.top[k])}`);
    if (result.base_top) {
      const without = element("span", `\nwithout interventions: ${topText(result.base_top[k])}`);
      if (result.base_top[k][0][0] !== result.top[k][0][0]) without.className = "changed";
      tip.appendChild(without);
    }
  });

  // ---------------------------------------------------------------------------------------- features
  async function featuresNow(text, seq) {
    const mine = ++state.featureSeq;
    try {
      const found = await post("/api/features", { text, quantity: quantitySel.value, top: 3, session: state.session });
      if (mine !== state.featureSeq || seq !== state.seq) return;
      showFeatures(found);
    } catch (err) {
      if (mine === state.featureSeq) setStatus(featureStatus, String(err.message || err), true);
    }
  }

  const signed = (x) => `${x >= 0 ? "+" : "−"}${Math.abs(x).toFixed(2)}`;

  // What a unit's row says beyond its score: how far its colour moves, and whether it beats the feature's controls.
  function unitTitle(row, feature) {
    const lines = [`${row.metric === "auc" ? "AUC" : "Pearson r"} ${row.value.toFixed(3)}: ` +
      `${row.sign > 0 ? "higher" : "lower"} where ${feature} is higher`];
    if (row.effect !== null) {
      lines.push(row.visible
        ? `effect ${signed(row.effect)} on the −1..+1 colour scale: it visibly switches`
        : `flat: its colour moves by only ${signed(row.effect)} on the −1..+1 scale (saturated: one solid band)`);
    }
    for (const c of row.controls || []) {
      lines.push(`control ${c.control}: score ${c.score.toFixed(2)} on it, ${c.partial.toFixed(2)} given it`);
    }
    if (row.controls) lines.push(row.beats_controls ? "a cell of the feature, not of its control" : "does not beat its control");
    lines.push("click to show this unit");
    return lines.join("\n");
  }

  function showFeatures(found) {
    const list = element("ul");
    for (const feature of found.features) {
      const li = element("li");
      li.dataset.feature = feature.feature;
      const controls = feature.controls && feature.controls.length ? `; control ${feature.controls.join(", ")}` : "";
      li.append(element("span", feature.feature, "name"), ` (${feature.metric}${controls})`, element("br"));
      for (const row of feature.units) {
        const button = element("button", `${row.layer}:${row.unit} ${row.score.toFixed(2)}${row.sign > 0 ? "+" : "−"}`);
        if (row.effect !== null) button.append(" ", element("span", `Δ${signed(row.effect)}`, "effect"));
        if (!row.visible) {
          button.classList.add("flat");
          button.append(" flat");
        }
        button.type = "button";
        button.title = unitTitle(row, feature.feature);
        button.dataset.layer = row.layer;
        button.dataset.unit = String(row.unit);
        button.addEventListener("click", () => showUnit(row.layer, row.unit));
        li.appendChild(button);
      }
      list.appendChild(li);
    }
    featureBox.replaceChildren(list);
    const constant = found.constant.length ? ` · constant here: ${found.constant.join(", ")}` : "";
    setStatus(featureStatus, `${found.features.length} feature(s) vary on this text (${found.quantity})${constant}`);
    markCurrentUnit();
  }

  function markCurrentUnit() {
    for (const b of featureBox.querySelectorAll("button")) {
      b.classList.toggle("current", b.dataset.layer === layerSel.value && Number(b.dataset.unit) === unit());
    }
  }

  function showUnit(layer, u) {
    unitInput.value = String(u);
    if (layerSel.value !== layer) {
      layerSel.value = layer;
      traceNow();
    } else {
      recolour();
    }
  }

  // ---------------------------------------------------------------------------------------- interventions
  function addIntervention(op) {
    const name = `${layerSel.value}.${quantitySel.value}`, u = unit();
    const spec = { op, name, units: [u] };
    if ($("over-span").checked) {
      const brush = brushed();
      if (!brush || brush.where !== textBox) {
        setStatus(status, "brush a span of the coloured text first, or untick 'only over the brushed span'", true);
        return;
      }
      spec.span = [brush.start, brush.end];
    }
    if (op === "clamp") spec.value = Number($("clamp-value").value);
    if (op === "scale") spec.factor = Number($("scale-factor").value);
    state.interventions.push(spec);
    showInterventions();
    traceNow();
  }

  function showInterventions() {
    chips.replaceChildren();
    state.interventions.forEach((spec, j) => {
      const what = spec.op === "clamp" ? ` = ${spec.value}` : spec.op === "scale" ? ` × ${spec.factor}` : " = 0";
      const where = spec.span ? ` over ${spec.span[0]}..${spec.span[1]}` : "";
      const chip = element("span", `${spec.op} ${spec.name}[${spec.units[0]}]${what}${where}`, "chip");
      const remove = element("button", "×");
      remove.type = "button";
      remove.title = "remove this intervention";
      remove.addEventListener("click", () => {
        state.interventions.splice(j, 1);
        showInterventions();
        traceNow();
      });
      chip.appendChild(remove);
      chips.appendChild(chip);
    });
    if (!state.interventions.length) chips.appendChild(element("span", "none: the model runs as trained", "status"));
  }

  // ---------------------------------------------------------------------------------------- select & match
  // Where a selection boundary falls: [container element, index] of a character span of the text or a passage.
  function boundary(node, offset, isEnd) {
    let span = node.nodeType === Node.TEXT_NODE ? node.parentNode : null;
    let i;
    if (span && span.dataset && span.dataset.i !== undefined) {
      i = Number(span.dataset.i);
      // A drag that ends at the very start of a character (or starts at its very end) does not take it.
      i = isEnd ? (offset === 0 ? i : i + 1) : offset >= node.length ? i + 1 : i;
      return [span.parentNode, i];
    }
    if (node.nodeType === Node.ELEMENT_NODE && (node === textBox || node.classList.contains("passage"))) {
      return [node, offset];
    }
    span = node.nodeType === Node.ELEMENT_NODE ? node : null;
    if (span && span.dataset && span.dataset.i !== undefined) return [span.parentNode, Number(span.dataset.i) + (offset ? 1 : 0)];
    return [null, null];
  }

  // The brushed span: {where: the text box or a passage element, start, end} over its characters.
  function brushed() {
    const selection = window.getSelection();
    if (!selection || selection.rangeCount === 0 || selection.isCollapsed) return null;
    const range = selection.getRangeAt(0);
    let [from, start] = boundary(range.startContainer, range.startOffset, false);
    let [to, end] = boundary(range.endContainer, range.endOffset, true);
    // A drag that began or ended outside the text takes the text up to its edge.
    if (!from && to) [from, start] = [to, 0];
    if (!to && from) [to, end] = [from, from.children.length];
    if (!from || from !== to) return null;
    return start < end ? { where: from, start, end } : null;
  }

  function patternCanvas(pattern) {
    // One row per shown cell, one column per passage character: blue where the cell is on (the paper's +1).
    const canvas = document.createElement("canvas");
    const cols = pattern[0].length, rows = pattern.length, w = 3, h = 2;
    canvas.width = cols * w;
    canvas.height = rows * h;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = colourAt(0);
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = colourAt(1);
    pattern.forEach((bits, r) => {
      for (let c = 0; c < cols; c++) if (bits[c] === "1") ctx.fillRect(c * w, r * h, w, h);
    });
    canvas.title = `${rows} selected cell(s) (rows) over the passage's characters: blue where on`;
    return canvas;
  }

  function showMatches(found) {
    matchList.replaceChildren();
    const n = found.pattern_cells.length;
    for (const m of found.matches) {
      const li = element("li");
      const passage = element("div", undefined, "passage");
      passage.dataset.corpus = String(m.corpus);
      passage.dataset.offset = String(m.offset);
      const text = m.before + m.span + m.after;
      // Each character shaded by how many of the selected cells are on at it: white none, blue all.
      [...text].forEach((char, j) => {
        const span = element("span", char);
        span.dataset.i = String(j);
        const on = m.pattern.reduce((sum, bits) => sum + (bits[j] === "1" ? 1 : 0), 0);
        span.style.backgroundColor = colourAt(on / n);
        span.title = `${on} of ${n} selected cell(s) on`;
        const step = m.offset + j;
        if (step >= m.start && step < m.end) span.className = "in";
        passage.appendChild(span);
      });
      const score = element("div", `${state.info.corpora[m.corpus]} ${m.start}..${m.end} · ` +
        `jaccard ${m.jaccard.toFixed(2)} (${m.intersection} on of ${m.union})`, "score");
      li.append(passage, patternCanvas(m.pattern), score);
      matchList.appendChild(li);
    }
  }

  async function selectAndMatch() {
    const brush = brushed();
    if (!brush) {
      setStatus(selectStatus, "brush (drag over) a span of the coloured text or of a matched passage first", true);
      return;
    }
    const common = {
      threshold: Number($("threshold").value), before: Number($("before").value), after: Number($("after").value),
    };
    let body, label;
    if (brush.where === textBox) {
      if (!state.result) return;
      body = { ...common, text: state.result.chars.join(""), span: [brush.start, brush.end],
        layer: layerSel.value, quantity: quantitySel.value };
      label = `span ${brush.start}..${brush.end}`;
    } else {
      const offset = Number(brush.where.dataset.offset), corpus = Number(brush.where.dataset.corpus);
      body = { ...common, corpus, span: [offset + brush.start, offset + brush.end], layer: layerSel.value,
        quantity: state.info.state_quantity };
      label = `${state.info.corpora[corpus]} ${offset + brush.start}..${offset + brush.end}`;
    }
    try {
      const selected = await post("/api/select", body);
      const cells = selected.cells;
      const shown = cells.slice(0, 12).map(([l, u]) => `${l}:${u}`).join(", ") + (cells.length > 12 ? ", …" : "");
      if (!cells.length) {
        matchList.replaceChildren();
        setStatus(selectStatus, `${label}: no cell of ${body.layer} is off before, on over and off after it at θ = ${common.threshold}`);
        return;
      }
      setStatus(selectStatus, `${label}: ${cells.length} cell(s) ${shown}; matching…`);
      const found = await post("/api/match", { cells, top: 50, quantity: selected.quantity, threshold: common.threshold });
      showMatches(found);
      setStatus(selectStatus, `${label}: ${cells.length} cell(s) ${shown}; ${found.matches.length} match(es) at θ = ${found.threshold}`);
    } catch (err) {
      setStatus(selectStatus, String(err.message || err), true);
    }
  }

  // ---------------------------------------------------------------------------------------- opening
  // The page opens on the server's choice (GET /api/initial): a passage of the corpus, or a probe text, with the
  // unit that tracks a feature of it best selected, so that it never opens on an empty box showing unit 0.
  async function openInitial() {
    try {
      const response = await fetch("/api/initial");
      const initial = await response.json();
      if (!response.ok) throw new Error(initial.error || `/api/initial: HTTP ${response.status}`);
      state.initial = initial;
      if (input.value) return; // typed while it was worked out: the reader's text wins
      input.value = initial.text;
      layerSel.value = initial.layer;
      quantitySel.value = initial.quantity;
      unitInput.value = String(initial.unit);
      legend();
      setStatus(opened, initial.reason);
      await traceNow();
    } catch (err) {
      setStatus(opened, `no opening passage: ${err.message || err}`, true);
    }
  }

  async function start() {
    const response = await fetch("/api/info");
    state.info = await response.json();
    state.info.layers.forEach((name) => option(layerSel, name));
    layerSel.value = state.info.layers[state.info.layers.length - 1];
    state.info.quantities.forEach((name) => option(quantitySel, name));
    quantitySel.value = state.info.state_quantity;
    unitInput.max = String(state.info.hidden_size - 1);
    $("threshold").value = String(state.info.thresholds[0]);
    const indexed = state.info.indexing === null ? "indexed" : `being indexed (${Math.floor(state.info.indexing)}%)`;
    const corpora = state.info.corpora.length
      ? `${state.info.corpora.length} corpus text(s) ${indexed} at θ = ${state.info.thresholds.join(", ")}` : "no corpus to match in";
    setStatus(status, `${state.info.cell}, ${state.info.layers.length} layer(s) of ${state.info.hidden_size} · ${corpora}`);
    legend();
    showInterventions();
    $("atlas-section").hidden = !state.info.atlas;
    input.addEventListener("input", scheduleTrace);
    layerSel.addEventListener("change", traceNow);
    quantitySel.addEventListener("change", () => { legend(); traceNow(); });
    unitInput.addEventListener("input", recolour);
    $("ablate").addEventListener("click", () => addIntervention("ablate"));
    $("clamp").addEventListener("click", () => addIntervention("clamp"));
    $("scale").addEventListener("click", () => addIntervention("scale"));
    $("select").addEventListener("click", selectAndMatch);
    if (input.value) traceNow(); // a reload keeps the textarea's text
    else await openInitial();
    document.body.dataset.ready = "1";
    if (state.info.indexing !== null) watchIndexing();
  }

  // The corpora are indexed in the background (lstm-interp serve answers at once): until they are ready, the
  // select & match box says how far it is, asking /api/info once a second; a selection meanwhile gets the same
  // answer from the server (503, "indexing, n%").
  async function watchIndexing() {
    const beside = $("index-status"); // next to the select & match button, where a reader looks for it
    beside.hidden = false;
    while (true) {
      const info = await (await fetch("/api/info")).json();
      beside.textContent = info.indexing === null ? "" : `corpus indexing, ${Math.floor(info.indexing)}%`;
      if (info.indexing === null) {
        beside.hidden = true;
        state.info.corpus_steps = info.corpus_steps;
        if (/^indexing, /.test(selectStatus.textContent)) setStatus(selectStatus, "the corpora are indexed: select & match");
        return;
      }
      if (!selectStatus.textContent || /^indexing, /.test(selectStatus.textContent)) {
        setStatus(selectStatus, `indexing, ${Math.floor(info.indexing)}%: select and match in the corpora work once it is done`);
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  start().catch((err) => setStatus(status, `cannot reach the server: ${err.message || err}`, true));
})();
