// The live explorer's page: trace what is typed, colour each character by one unit, select & match a span.
// Every text (typed, traced, or from a corpus) enters the DOM through textContent only, never as markup.
(() => {
  "use strict";

  // The report's diverging scale (lstm_interp/report/report.js): -1 red, 0 white, +1 blue, one colour per code byte.
  const ANCHORS = [[-1, [222, 84, 70]], [-0.5, [247, 176, 150]], [0, [247, 247, 247]],
    [0.5, [166, 206, 227]], [1, [58, 132, 193]]];
  function colourAt(x) {
    let j = 1;
    while (j < ANCHORS.length - 1 && x > ANCHORS[j][0]) j++;
    const [x0, c0] = ANCHORS[j - 1], [x1, c1] = ANCHORS[j];
    const t = Math.min(1, Math.max(0, (x - x0) / (x1 - x0)));
    return `rgb(${c0.map((v, k) => Math.round(v + t * (c1[k] - v))).join(", ")})`;
  }
  const COLOURS = Array.from({ length: 256 }, (_, b) => colourAt(b / 127.5 - 1));
  const DEBOUNCE_MS = 150;

  const $ = (id) => document.getElementById(id);
  const input = $("input"), textBox = $("text"), status = $("status"), tip = $("tip");
  const layerSel = $("layer"), quantitySel = $("quantity"), unitInput = $("unit");
  const selectStatus = $("select-status"), matchList = $("matches");
  const state = { info: null, result: null, codes: null, column: [], seq: 0, timer: 0 };
  window.lstmExplorer = { renders: 0, state };
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

  function option(select, value) {
    const el = document.createElement("option");
    el.value = value;
    el.textContent = value;
    select.appendChild(el);
  }

  // The displayed value of a code byte on -1..+1, and the raw value it stands for (a gate's 0..1, tanh(c)).
  function describe(code) {
    const x = code / 127.5 - 1;
    const kind = state.info.kinds[state.result.quantity];
    if (kind === "gate") return `${((x + 1) / 2).toFixed(3)}`;
    if (kind === "unbounded") return `tanh(c) = ${x.toFixed(3)}`;
    return x.toFixed(3);
  }

  function unit() {
    const n = Number(unitInput.value);
    const H = state.info ? state.info.hidden_size : 1;
    return Number.isInteger(n) && n >= 0 && n < H ? n : 0;
  }

  function build(result) {
    // Rebuilt per trace: a few thousand spans at most (max_text_chars), each with its character as textContent.
    const unknown = new Set(result.unknown);
    state.column = [];
    let k = 0;
    const frag = document.createDocumentFragment();
    result.chars.forEach((char, i) => {
      const span = document.createElement("span");
      span.textContent = char;
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
    const T = result.steps, row = unit() * T;
    const spans = textBox.children;
    for (let i = 0; i < spans.length; i++) {
      const k = state.column[i];
      spans[i].style.backgroundColor = k < 0 ? "" : COLOURS[codes[row + k]];
    }
    window.lstmExplorer.renders += 1;
    document.body.dataset.renders = String(window.lstmExplorer.renders);
  }

  async function traceNow() {
    const text = input.value;
    const seq = ++state.seq;
    if (!text) {
      state.result = null;
      textBox.replaceChildren();
      setStatus(status, "type a text to trace");
      return;
    }
    try {
      const result = await post("/api/trace", { text, layer: layerSel.value, quantity: quantitySel.value });
      if (seq !== state.seq) return; // a later keystroke's trace is on its way
      const raw = atob(result.values);
      state.codes = Uint8Array.from(raw, (c) => c.charCodeAt(0));
      state.result = result;
      build(result);
      recolour();
      const skipped = result.unknown.length ? ` · ${result.unknown.length} unknown character(s) skipped` : "";
      setStatus(status, `${result.steps} characters traced in ${result.server_ms.toFixed(1)} ms${skipped}`);
    } catch (err) {
      if (seq === state.seq) setStatus(status, String(err.message || err), true);
    }
  }

  function scheduleTrace() {
    clearTimeout(state.timer);
    state.timer = setTimeout(traceNow, DEBOUNCE_MS);
  }

  textBox.addEventListener("mouseover", (event) => {
    const span = event.target.closest("#text span");
    if (!span || !state.result) return;
    for (const el of textBox.querySelectorAll("span.hover")) el.classList.remove("hover");
    span.classList.add("hover");
    const i = Number(span.dataset.i), k = state.column[i];
    const shown = JSON.stringify(state.result.chars[i]);
    if (k < 0) {
      tip.textContent = `${shown}: outside the vocabulary, not traced`;
      return;
    }
    const value = describe(state.codes[unit() * state.result.steps + k]);
    const next = state.result.top[k].map(([c, p]) => `${JSON.stringify(c)} ${p.toFixed(3)}`).join(", ");
    tip.textContent = `${shown} · ${state.result.layer}.${state.result.quantity}[${unit()}] = ${value} · next: ${next}`;
  });

  // Where a selection's boundary falls, as a character index: a point before or after a character's text.
  function boundary(node, offset, isEnd) {
    if (node.nodeType === Node.TEXT_NODE && node.parentNode && node.parentNode.parentNode === textBox) {
      const i = Number(node.parentNode.dataset.i);
      // A drag that ends at the very start of a character (or starts at its very end) does not take it.
      if (isEnd) return offset === 0 ? i : i + 1;
      return offset >= node.length ? i + 1 : i;
    }
    if (node === textBox) return offset;
    if (node.parentNode === textBox) return Number(node.dataset.i) + (offset === 0 ? 0 : 1);
    return null;
  }

  // The brushed span, as [start, end) over the text's characters, from the page's selection.
  function brushed() {
    const selection = window.getSelection();
    if (!selection || selection.rangeCount === 0 || selection.isCollapsed) return null;
    const range = selection.getRangeAt(0);
    if (!range.intersectsNode(textBox)) return null;
    let start = boundary(range.startContainer, range.startOffset, false);
    let end = boundary(range.endContainer, range.endOffset, true);
    // A drag that began or ended outside the text takes the text up to its edge.
    if (start === null) start = 0;
    if (end === null) end = textBox.children.length;
    return start < end ? [start, end] : null;
  }

  function showMatches(matches) {
    matchList.replaceChildren();
    for (const m of matches) {
      const li = document.createElement("li");
      const mark = document.createElement("mark");
      mark.textContent = m.span;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = ` — corpus ${m.corpus} ${m.start}..${m.end}, jaccard ${m.jaccard.toFixed(2)} ` +
        `(${m.intersection}/${m.union})`;
      li.append(document.createTextNode(m.before), mark, document.createTextNode(m.after), score);
      matchList.appendChild(li);
    }
  }

  async function selectAndMatch() {
    const span = brushed();
    if (!span || !state.result) {
      setStatus(selectStatus, "brush (select with the mouse) a span of the coloured text first", true);
      return;
    }
    const text = state.result.chars.join("");
    try {
      const selected = await post("/api/select", {
        text, span, threshold: Number($("threshold").value), before: Number($("before").value),
        after: Number($("after").value), layer: state.result.layer, quantity: state.result.quantity,
      });
      const cells = selected.cells;
      const shown = cells.map(([l, u]) => `${l}:${u}`).join(", ");
      if (!cells.length) {
        matchList.replaceChildren();
        setStatus(selectStatus, `span ${span[0]}..${span[1]}: no cell has this on/off pattern`);
        return;
      }
      setStatus(selectStatus, `span ${span[0]}..${span[1]}: ${cells.length} cell(s) ${shown}; matching…`);
      const { matches } = await post("/api/match", { cells, top: 50, quantity: state.result.quantity });
      showMatches(matches);
      setStatus(selectStatus, `span ${span[0]}..${span[1]}: ${cells.length} cell(s) ${shown}; ${matches.length} match(es)`);
    } catch (err) {
      setStatus(selectStatus, String(err.message || err), true);
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
    const corpora = state.info.corpora.length ? `${state.info.corpora.length} corpus text(s) indexed` : "no corpus";
    setStatus(status, `${state.info.cell}, ${state.info.layers.length} layer(s) of ${state.info.hidden_size} · ${corpora}`);
    input.addEventListener("input", scheduleTrace);
    layerSel.addEventListener("change", traceNow);
    quantitySel.addEventListener("change", traceNow);
    unitInput.addEventListener("input", recolour);
    $("select").addEventListener("click", selectAndMatch);
    document.body.dataset.ready = "1";
    if (input.value) traceNow();
  }

  start().catch((err) => setStatus(status, `cannot reach the server: ${err.message || err}`, true));
})();
