/* lstm_interp report. The data are one byte per (unit, character), an index into COLOURS (colours.js); arrays are
 * decoded from the page's base-128 blobs (fromBase128) the first time they are shown. A page too small for every
 * unit holds some of each layer (q.rows) and steps between those. One span per character is created once per
 * probe; a recolour is a single pass writing style.backgroundColor, skipping spans whose colour is unchanged.
 * Hover uses one delegated listener on the text, never one per character. */
"use strict";
(() => {
  const meta = JSON.parse(document.getElementById("report-meta").textContent);
  const el = (id) => document.getElementById(id);
  const ui = {
    probe: el("probe"), layer: el("layer"), quantity: el("quantity"), unit: el("unit"), slider: el("unit-slider"),
    prev: el("prev"), next: el("next"), count: el("unit-count"), text: el("text"), status: el("status"),
    tooltip: el("tooltip"), top: el("top-units"), topCaption: el("top-caption"), features: el("features"),
    limit: el("limit-note"), note: el("open-note"), predict: el("predict"), predictBody: el("predict-body"),
    predictCaption: el("predict-caption"),
  };

  // The diverging red-white-blue scale (-1 red, 0 white, +1 blue), one CSS colour per code byte: defined once in
  // colours.js, which the page runs before this script, so that the live explorer shows the very same colours.
  const COLOURS = globalThis.lstmInterpColours.codes;

  // How a byte reads back for each kind of quantity (the kinds of lstm_interp/tracing/quantities.py).
  const KINDS = {
    gate: { lo: "0", mid: "0.5", hi: "1", label: (q) => q, value: (b) => b / 255,
      caption: (q) => `${q}: sigmoid, 0..1, centred at 0.5` },
    unbounded: { lo: "−1", mid: "0", hi: "+1", label: (q) => `tanh(${q})`, value: (b) => b / 127.5 - 1,
      caption: (q) => `tanh(${q}): −1..+1` },
    signed: { lo: "−1", mid: "0", hi: "+1", label: (q) => q, value: (b) => b / 127.5 - 1,
      caption: (q) => `${q}: −1..+1` },
  };

  // readAt: the position last clicked, whose line the read-and-predict rows show (-1: the probe's start).
  const state = { probe: 0, layer: 0, quantity: 0, unit: 0, readAt: -1 };
  // decode(id) and painted() let tests read what the page decoded and shows; decodes records each blob's time;
  // predictRenders counts the read-and-predict rows drawn.
  const api = (window.lstmReport = {
    state, renders: 0, predictRenders: 0, timings: [], decodes: [], select,
    decode: (id) => decodeBlob(id).then((bytes) => Array.from(bytes)),
    painted: () => Array.from(shown || []),
  });
  const blobs = new Map(); // blob id -> Promise<Uint8Array>; a few recent ones kept, as each can be megabytes
  const MAX_CACHED = 8;
  const BLOCK_CHARS = 400;
  // The read-and-predict window: this many characters from the start of the clicked line (or of the probe), in
  // blocks of PREDICT_PER_LINE columns, as plot_topk_predictions draws its PNG.
  const PREDICT_CHARS = 120;
  const PREDICT_PER_LINE = 60;
  let spans = [], chars = [], shown = null, predictions = null, generation = 0, hovered = null;

  // Base-128 text (lstm_interp/report/_encode.py, b128encode): an ASCII character is 7 bits, most significant
  // first; a character from U+0100 is one of the 7-bit values that cannot stand in a <script> (NUL, CR, "<"; its
  // index in the top bits) followed by the next 7 bits. About 8/7 of the bytes, against base64's 4/3.
  const ILLEGAL = [0x00, 0x0d, 0x3c];
  function fromBase128(text, size) {
    const out = new Uint8Array(size);
    let acc = 0, bits = 0, o = 0;
    for (let k = 0; k < text.length && o < size; k++) {
      const c = text.charCodeAt(k);
      if (c < 0x80) {
        acc = (acc << 7) | c;
        bits += 7;
      } else {
        const v = c - 0x100;
        acc = (acc << 14) | (ILLEGAL[v >> 7] << 7) | (v & 0x7f);
        bits += 14;
      }
      while (bits >= 8 && o < size) out[o++] = (acc >>> (bits -= 8)) & 0xff;
      acc &= (1 << bits) - 1;
    }
    if (o !== size) throw new Error(`a blob decoded to ${o} of its ${size} bytes`);
    return out;
  }

  function decodeBlob(id) {
    if (blobs.has(id)) {
      const hit = blobs.get(id);
      blobs.delete(id);
      blobs.set(id, hit);
      return hit;
    }
    const node = el(id), t0 = performance.now();
    const bytes = fromBase128(node.textContent, Number(node.dataset.bytes));
    let result = Promise.resolve(bytes);
    if (node.hasAttribute("data-deflated")) {
      if (typeof DecompressionStream === "undefined") throw new Error("this browser lacks DecompressionStream");
      const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
      result = new Response(stream).arrayBuffer().then((buffer) => new Uint8Array(buffer));
    }
    result.then((data) => api.decodes.push({ id, bytes: data.length, ms: performance.now() - t0 }), () => {});
    blobs.set(id, result);
    if (blobs.size > MAX_CACHED) blobs.delete(blobs.keys().next().value);
    return result;
  }

  const probe = () => meta.probes[state.probe];
  const layer = () => probe().layers[state.layer];
  const quantity = () => layer().quantities[state.quantity];

  /** Where `unit` is in the blob of `q` (its row), or -1 if the page does not hold it. */
  function rowOf(q, unit) {
    if (!q.rows) return unit >= 0 && unit < q.units ? unit : -1;
    const i = lowerBound(q.rows, unit);
    return q.rows[i] === unit ? i : -1;
  }
  function lowerBound(sorted, x) {
    let lo = 0, hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
  /** The held unit nearest `unit`: the next one up (direction > 0), down (< 0), or either (0, the lower on ties). */
  function snap(q, unit, direction) {
    const rows = q.rows;
    if (!rows || rowOf(q, unit) >= 0) return unit;
    const i = lowerBound(rows, unit), below = rows[Math.max(0, i - 1)], above = rows[Math.min(rows.length - 1, i)];
    if (direction > 0) return above;
    if (direction < 0) return below;
    return i === 0 ? above : i === rows.length ? below : unit - below <= above - unit ? below : above;
  }

  function fail(error) {
    console.error(error);
    ui.status.textContent = `error: ${error.message || error}`;
    ui.status.classList.add("error");
  }

  function visible(c) {
    if (c === "\n") return "↵\n";
    if (c === "\t") return "→\t";
    const code = c.codePointAt(0);
    if (code < 32) return String.fromCodePoint(0x2400 + code);
    return code === 127 ? "␡" : c;
  }

  function renderProbe() {
    // One entry per time step: the characters of the text (by code point, as Python counts them), or the token
    // strings (words, subwords) of a probe whose steps are tokens, drawn as wide as they are, a space apart.
    const tokens = probe().tokens;
    chars = tokens ? tokens.slice() : Array.from(probe().text);
    const frag = document.createDocumentFragment();
    spans = new Array(chars.length);
    // Whole lines are grouped into blocks of about BLOCK_CHARS; the CSS gives each block content-visibility:
    // auto, so the browser restyles and paints only the blocks on screen after a recolour.
    let block = null, blockChars = 0, blockLines = 0;
    for (let i = 0; i < chars.length; i++) {
      if (block === null) {
        block = document.createElement("div");
        blockChars = blockLines = 0;
      }
      const s = document.createElement("span");
      const shownAs = visible(chars[i]);
      s.textContent = shownAs;
      if (shownAs !== chars[i]) s.className = "ctl";
      s._i = i;
      spans[i] = s;
      block.appendChild(s);
      if (tokens && chars[i] !== "\n" && i < chars.length - 1) block.appendChild(document.createTextNode(" "));
      blockChars++;
      if (chars[i] === "\n") blockLines++;
      if ((chars[i] === "\n" && blockChars >= BLOCK_CHARS) || i === chars.length - 1) {
        block.style.containIntrinsicSize = `auto ${(1.65 * 13 * (blockLines + 1)).toFixed(0)}px`;
        frag.appendChild(block);
        block = null;
      }
    }
    const series = probe().series;
    ui.text.classList.toggle("series-steps", Boolean(series));
    if (series) {
      // Not text: the steps are coloured blocks on one time axis, under the input channels drawn as lines.
      for (const s of spans) s.textContent = "";
      const chart = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      chart.id = "series-chart";
      chart.setAttribute("viewBox", `0 0 ${chars.length} 100`);
      chart.setAttribute("preserveAspectRatio", "none");
      frag.prepend(chart);
      const which = state.probe;
      decodeBlob(series.blob).then((codes) => {
        if (state.probe !== which) return;
        const T = chars.length, palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"];
        for (let c = 0; c < series.channels; c++) {
          const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
          const points = [];
          for (let t = 0; t < T; t++) points.push(`${t + 0.5},${(96 - 0.92 * (codes[c * T + t] / 2.55)).toFixed(2)}`);
          line.setAttribute("points", points.join(" "));
          line.setAttribute("stroke", palette[c % palette.length]);
          line.setAttribute("fill", "none");
          line.setAttribute("vector-effect", "non-scaling-stroke");
          chart.appendChild(line);
        }
      }).catch(fail);
    }
    ui.text.replaceChildren(frag);
    shown = new Int16Array(chars.length).fill(-1);
    predictions = null;
    state.readAt = -1;
    hideTooltip();
    const p = probe().predictions, which = state.probe;
    if (p) {
      Promise.all([decodeBlob(p.ids), decodeBlob(p.probs)]).then(([ids, probs]) => {
        if (state.probe !== which) return;
        predictions = { k: p.k, ids: new Uint16Array(ids.buffer, 0, ids.length / 2), probs };
        renderPredict();
      }).catch(fail);
    }
  }

  function fill(select, labels, index) {
    select.replaceChildren(...labels.map((label, i) => new Option(label, String(i))));
    select.value = String(index);
  }

  function setProbe(index) {
    const layerName = layer().name, quantityName = quantity().name;
    state.probe = index;
    ui.probe.value = String(index);
    renderProbe();
    const found = probe().layers.findIndex((l) => l.name === layerName);
    setLayer(Math.max(0, found), quantityName);
  }

  function setLayer(index, quantityName = quantity().name) {
    state.layer = index;
    fill(ui.layer, probe().layers.map((l) => l.name), index);
    const names = layer().quantities.map((q) => q.name);
    const found = names.indexOf(quantityName);
    fill(ui.quantity, names, Math.max(0, found));
    setQuantity(Math.max(0, found));
  }

  function setQuantity(index, unit = state.unit) {
    state.quantity = index;
    ui.quantity.value = String(index);
    const q = quantity(), kind = KINDS[q.kind];
    ui.unit.max = String(q.units - 1);
    ui.slider.max = String((q.rows ? q.rows.length : q.units) - 1); // a page holding some units slides over those
    ui.count.textContent = q.rows ? `of ${q.units} · ${q.rows.length} in this page` : `of ${q.units}`;
    el("legend-bar").style.background = `linear-gradient(to right, ${COLOURS.filter((_, b) => b % 17 === 0).join(", ")})`;
    el("legend-lo").textContent = kind.lo;
    el("legend-mid").textContent = kind.mid;
    el("legend-hi").textContent = kind.hi;
    el("legend-caption").textContent = kind.caption(q.name);
    renderTopUnits();
    setUnit(unit);
  }

  function setUnit(unit, direction = 0) {
    const q = quantity();
    unit = snap(q, Math.min(q.units - 1, Math.max(0, Math.trunc(Number(unit)) || 0)), direction);
    state.unit = unit;
    ui.unit.value = String(unit);
    ui.slider.value = String(rowOf(q, unit));
    for (const li of document.querySelectorAll(".unit-list li")) {
      const same = Number(li.dataset.unit) === unit && (!li.dataset.layer || li.dataset.layer === layer().name);
      li.classList.toggle("current", same);
    }
    recolour().catch(fail);
  }

  /** Select by names, as a feature match does: any of probe, layer, quantity, unit. */
  function select({ probe: p, layer: layerName, quantity: quantityName, unit }) {
    if (p !== undefined && p !== state.probe && meta.probes[p]) setProbe(p);
    const li = probe().layers.findIndex((l) => l.name === layerName);
    if (li >= 0 && li !== state.layer) setLayer(li, quantityName || quantity().name);
    const qi = layer().quantities.findIndex((q) => q.name === quantityName);
    if (qi >= 0 && qi !== state.quantity) setQuantity(qi, unit ?? state.unit);
    else setUnit(unit ?? state.unit);
  }

  async function recolour() {
    const mine = ++generation;
    const q = quantity(), kind = KINDS[q.kind], unit = state.unit, label = `${layer().name} · ${kind.label(q.name)}`;
    if (!blobs.has(q.blob)) ui.status.textContent = `decoding ${label}…`;
    const codes = await decodeBlob(q.blob);
    if (mine !== generation) return; // a later change superseded this one
    const T = spans.length, rows = q.rows ? q.rows.length : q.units, offset = rowOf(q, unit) * T;
    if (codes.length !== rows * T) throw new Error(`${label}: ${codes.length} values for ${rows} × ${T}`);
    const t0 = performance.now();
    let changed = 0, sum = 0, sumSq = 0, lo = 255, hi = 0;
    for (let i = 0; i < T; i++) {
      const c = codes[offset + i];
      if (shown[i] !== c) {
        shown[i] = c;
        spans[i].style.backgroundColor = COLOURS[c];
        changed++;
      }
      sum += c;
      sumSq += c * c;
      if (c < lo) lo = c;
      if (c > hi) hi = c;
    }
    const loopMs = performance.now() - t0;
    const timing = { unit, chars: T, changed, loopMs, frameMs: null };
    api.timings.push(timing);
    // Two frames later the browser has restyled and painted the change: that is what the user waits for.
    requestAnimationFrame(() => requestAnimationFrame(() => { timing.frameMs = performance.now() - t0; }));
    const mean = sum / T, sd = Math.sqrt(Math.max(0, sumSq / T - mean * mean));
    const scale = q.kind === "gate" ? 1 / 255 : 1 / 127.5, shift = q.kind === "gate" ? 0 : -1;
    const f = (v) => v.toFixed(2);
    ui.status.classList.remove("error");
    ui.status.textContent = `${label} · unit ${unit} — mean ${f(mean * scale + shift)} · sd ${f(sd * scale)} · ` +
      `range ${f(kind.value(lo))}..${f(kind.value(hi))} · ${T.toLocaleString()} chars recoloured in ${loopMs.toFixed(1)} ms`;
    if (hovered) showTooltip(hovered);
    renderPredict();
    api.renders++;
    document.body.dataset.renders = String(api.renders);
  }

  function unitItem(unit, fraction, number, layerName) {
    const li = document.createElement("li");
    li.dataset.unit = String(unit);
    if (layerName) li.dataset.layer = layerName;
    const name = document.createElement("span");
    name.textContent = layerName ? `${layerName} #${unit}` : `#${unit}`;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${Math.max(2, Math.round(100 * fraction))}%`;
    const num = document.createElement("span");
    num.className = "num";
    num.textContent = number;
    li.append(name, ...(layerName ? [] : [bar]), num);
    return li;
  }

  function renderTopUnits() {
    const q = quantity(), top = q.top, most = top.length ? top[0][1] || 1 : 1;
    ui.topCaption.textContent = `${layer().name} · ${KINDS[q.kind].label(q.name)}, variance over the text`;
    ui.top.replaceChildren(...top.map(([unit, variance]) => unitItem(unit, variance / most, variance.toFixed(3))));
  }

  function renderFeatures() {
    if (!meta.features || !meta.features.length) return;
    el("features-section").hidden = false;
    for (const feature of meta.features) {
      const box = document.createElement("div");
      box.className = "feature";
      const h = document.createElement("h3");
      h.textContent = feature.name;
      const list = document.createElement("ol");
      list.className = "unit-list";
      feature.matches.forEach((m, i) => {
        const score = m.score === undefined ? "" : `${m.sign < 0 ? "−" : ""}${m.score.toFixed(2)}`;
        const li = unitItem(m.unit, 1, score, m.layer);
        li.dataset.feature = `${meta.features.indexOf(feature)}:${i}`;
        if (m.visible === false) {
          // A high score, but the colour barely moves with the feature: say so before the reader clicks.
          const tag = document.createElement("span");
          tag.className = "flat-tag";
          tag.textContent = "flat";
          li.firstChild.append(" ", tag);
          li.classList.add("flat");
          const moves = m.effect === undefined ? "barely moves" : `moves by ${m.effect >= 0 ? "+" : "−"}` +
            `${Math.abs(m.effect).toFixed(2)} of the −1..+1 scale`;
          li.title = `its colour ${moves} with ${feature.name}: a flat band`;
        }
        list.append(li);
      });
      box.append(h, list);
      ui.features.append(box);
    }
  }

  function renderLimit() {
    // The writer's max_bytes left units out: say which are here, and where to see the rest.
    const limit = meta.limit;
    if (!limit) return;
    const held = limit.layers.map((l) => `${l.shown} of the ${l.units} units of ${l.name}`).join(", ");
    const code = document.createElement("code");
    code.textContent = limit.serve;
    const named = meta.features && meta.features.length ? ", and every unit a feature match names" : "";
    ui.limit.append(`This page holds ${held}: the most variable of each quantity${named}. ` +
      `All of them over ${limit.chars.toLocaleString()} characters would not fit in a static page of ` +
      `${(limit.maxBytes / 1e6).toLocaleString()} MB. To explore every unit of a text this long, use `, code, ".");
    ui.limit.hidden = false;
  }

  function describe(c) {
    return { "\n": "newline", " ": "space", "\t": "tab" }[c] || (c.codePointAt(0) < 32 ? "control" : "");
  }

  function showTooltip(span) {
    hovered?.classList.remove("hover");
    hovered = span;
    span.classList.add("hover");
    const i = span._i, c = chars[i], q = quantity(), kind = KINDS[q.kind], tt = ui.tooltip;
    let line = 1, col = 1;
    for (let j = i - 1; j >= 0 && chars[j] !== "\n"; j--) col++;
    for (let j = 0; j < i; j++) if (chars[j] === "\n") line++;
    const head = document.createElement("div");
    head.className = "tt-head";
    const box = document.createElement("span");
    box.className = "tt-char";
    box.textContent = c === " " ? "␣" : visible(c).trimEnd() || c;
    const where = document.createElement("span");
    where.className = "muted";
    where.textContent = `${describe(c) ? describe(c) + " · " : ""}position ${i} · line ${line}, col ${col}`;
    head.append(box, where);
    const value = document.createElement("div");
    value.className = "tt-value";
    const b = shown[i];
    value.textContent = b < 0 ? "…" : `${layer().name} #${state.unit} ${kind.label(q.name)} = ${kind.value(b).toFixed(3)}`;
    tt.replaceChildren(head, value);
    if (predictions) {
      const table = document.createElement("table");
      table.className = "tt-preds";
      for (let r = 0; r < predictions.k; r++) {
        const pc = meta.vocab[predictions.ids[i * predictions.k + r]], p = predictions.probs[i * predictions.k + r] / 255;
        const tr = table.insertRow();
        if (pc === chars[i + 1]) tr.className = "next";
        const cc = tr.insertCell(), bar = tr.insertCell(), pp = tr.insertCell();
        cc.className = "c";
        cc.textContent = pc === " " ? "␣" : visible(pc).trimEnd() || pc;
        const fill = document.createElement("div");
        fill.className = "bar";
        fill.style.width = `${Math.max(1, Math.round(100 * p))}%`;
        bar.append(fill);
        pp.className = "p";
        pp.textContent = p < 0.005 ? "<1%" : `${(100 * p).toFixed(0)}%`;
      }
      const note = document.createElement("div");
      note.className = "tt-note";
      note.textContent = "top predictions for the next character; green = what came next";
      tt.append(table, note);
    } else if (probe().predictions === null) {
      const note = document.createElement("div");
      note.className = "tt-note";
      note.textContent = "no predictions in this report";
      tt.append(note);
    }
    tt.hidden = false;
    const r = span.getBoundingClientRect(), w = tt.offsetWidth, h = tt.offsetHeight;
    const top = r.bottom + 6 + h > window.innerHeight ? r.top - h - 6 : r.bottom + 6;
    tt.style.left = `${Math.max(4, Math.min(r.left, window.innerWidth - w - 8))}px`;
    tt.style.top = `${Math.max(4, top)}px`;
  }

  // ------------------------------------------------------------------------------------ read and predict
  // The blog's figure under the text (predict_rows.js): the characters of a window, the shown unit's colour under
  // each, and the model's top-k guesses for the next character. Drawn only while the section is open, again on
  // every recolour (unit, quantity, layer, probe) and when the reader clicks a character.

  /** [start, end) of the window: PREDICT_CHARS from the start of the clicked character's line, or of the probe. */
  function predictWindow() {
    const T = chars.length, at = state.readAt;
    if (at < 0 || at >= T) return [0, Math.min(T, PREDICT_CHARS)];
    let start = at;
    while (start > 0 && chars[start - 1] !== "\n") start--;
    if (at - start >= PREDICT_CHARS - 10) start = at - 30; // a long line: from a little before the click
    return [start, Math.min(T, start + PREDICT_CHARS)];
  }

  function predictNote(text) {
    const note = document.createElement("p");
    note.className = "predict-note";
    note.textContent = text;
    ui.predictBody.replaceChildren(note);
    ui.predictCaption.textContent = "";
  }

  function renderPredict() {
    if (!ui.predict.open) return;
    const p = probe().predictions;
    if (probe().series || probe().tokens) {
      predictNote("Read and predict draws one column per character: this probe's steps are not characters.");
    } else if (!p) {
      predictNote("This report holds no predictions, so there are no guesses to show: write it with " +
        "chars=model.vocab.chars from a trace that kept log_probs.");
    } else if (!predictions) {
      predictNote("decoding the predictions…"); // drawn again once they are decoded
    } else {
      const [start, end] = predictWindow(), k = predictions.k, q = quantity(), kind = KINDS[q.kind];
      const where = Array.from({ length: end - start }, (_, j) => start + j);
      const top = where.map((i) => Array.from({ length: k }, (_, r) =>
        [meta.vocab[predictions.ids[i * k + r]], predictions.probs[i * k + r] / 255]));
      const name = `${layer().name} #${state.unit} ${kind.label(q.name)}`;
      ui.predictBody.replaceChildren(globalThis.lstmInterpPredictRows.render({
        chars: where.map((i) => chars[i]), codes: where.map((i) => shown[i]), top,
        next: where.map((i) => (i + 1 < chars.length ? chars[i + 1] : null)), k, unitLabel: `unit ${state.unit}`,
        describe: (j) => `${name} = ${kind.value(shown[start + j]).toFixed(3)} after position ${start + j}`,
        offset: start, perLine: PREDICT_PER_LINE, mark: state.readAt,
        note: `unit row: ${name}, ${kind.lo} red · ${kind.mid} white · ${kind.hi} blue`,
      }));
      const T = chars.length.toLocaleString();
      ui.predictCaption.textContent = `characters ${start}–${end - 1} of ${T} · ` + (state.readAt < 0
        ? "click a character of the text to read from its line" : `from the line of position ${state.readAt}`);
    }
    api.predictRenders++;
    document.body.dataset.predictRenders = String(api.predictRenders);
  }

  function hideTooltip() {
    hovered?.classList.remove("hover");
    hovered = null;
    ui.tooltip.hidden = true;
  }

  function wire() {
    ui.probe.addEventListener("change", () => setProbe(Number(ui.probe.value)));
    ui.layer.addEventListener("change", () => setLayer(Number(ui.layer.value)));
    ui.quantity.addEventListener("change", () => setQuantity(Number(ui.quantity.value)));
    // While typing, only a unit the page holds is taken (snapping would rewrite the digits under the cursor); on
    // change (Enter, leaving the field) the nearest held unit is.
    ui.unit.addEventListener("input", () => {
      const q = quantity();
      if (ui.unit.value !== "" && (!q.rows || rowOf(q, Number(ui.unit.value)) >= 0)) setUnit(ui.unit.value);
    });
    ui.unit.addEventListener("change", () => setUnit(ui.unit.value));
    ui.slider.addEventListener("input", () => {
      const q = quantity();
      setUnit(q.rows ? q.rows[Number(ui.slider.value)] : ui.slider.value);
    });
    ui.prev.addEventListener("click", () => setUnit(state.unit - 1, -1));
    ui.next.addEventListener("click", () => setUnit(state.unit + 1, +1));
    ui.text.addEventListener("mouseover", (e) => { if (e.target._i !== undefined) showTooltip(e.target); });
    ui.text.addEventListener("mouseleave", hideTooltip);
    ui.text.addEventListener("click", (e) => {
      if (e.target._i === undefined) return;
      state.readAt = e.target._i;
      renderPredict();
    });
    ui.predict.addEventListener("toggle", renderPredict);
    ui.text.addEventListener("scroll", hideTooltip, { passive: true });
    ui.top.addEventListener("click", (e) => {
      const li = e.target.closest("li");
      if (li) setUnit(Number(li.dataset.unit));
    });
    ui.features.addEventListener("click", (e) => {
      const li = e.target.closest("li[data-feature]");
      if (!li) return;
      const [f, m] = li.dataset.feature.split(":").map(Number);
      select(meta.features[f].matches[m]);
    });
    document.addEventListener("keydown", (e) => {
      if (e.target.matches("input, select, textarea") || e.altKey || e.ctrlKey || e.metaKey) return;
      if (e.key === "ArrowRight") setUnit(state.unit + 1, +1);
      else if (e.key === "ArrowLeft") setUnit(state.unit - 1, -1);
      else return;
      e.preventDefault();
    });
  }

  try {
    if (meta.probes.length > 1) {
      el("probe-field").hidden = false;
      fill(ui.probe, meta.probes.map((p) => p.label), 0);
    }
    wire();
    renderFeatures();
    renderLimit();
    if (meta.note) {
      // The writer's word on where the page opens: no matched unit visibly switches, or the states are pinned.
      ui.note.textContent = meta.note;
      ui.note.hidden = false;
    }
    const open = meta.open; // a unit chosen by the writer (e.g. the best match of a feature), else none
    if (open && open.probe !== undefined && meta.probes[open.probe]) {
      state.probe = open.probe;
      ui.probe.value = String(open.probe);
    }
    renderProbe();
    state.layer = open ? Math.max(0, probe().layers.findIndex((l) => l.name === open.layer)) : 0;
    fill(ui.layer, probe().layers.map((l) => l.name), state.layer);
    const names = layer().quantities.map((q) => q.name);
    const first = Math.max(0, names.indexOf(open && open.quantity ? open.quantity : "cell"));
    fill(ui.quantity, names, first);
    const top = layer().quantities[first].top;
    // Open on the chosen unit, else on the most variable one: something to see at once.
    setQuantity(first, open ? open.unit : top.length ? top[0][0] : 0);
  } catch (error) {
    fail(error);
  }
})();
