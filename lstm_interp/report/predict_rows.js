/* "Read and predict": the closing figure of Karpathy's "The Unreasonable Effectiveness of Recurrent Neural
 * Networks", drawn into the DOM. One column per character of a window of text; its rows, top to bottom: the
 * character (on pale grey), the chosen unit's value after reading it (the project's scale: -1 red, 0 white, +1 blue,
 * from colours.js), then the model's k best guesses for the NEXT character, best first, each cell shaded by its
 * probability on one green hue (matplotlib's "Greens": darker = more likely) and bold where the guess is the
 * character that actually came next. A space guess is drawn "␣", a newline "↵". Long windows wrap into blocks of
 * `perLine` columns, a newline ending its block, as lstm_interp.plots.plot_topk_predictions lays out its PNG.
 *
 * One renderer for the HTML report and the live explorer, so both show the figure the same way. A classic script
 * (pages open from disk too) that defines one global, after colours.js (globalThis.lstmInterpColours):
 *
 *   globalThis.lstmInterpPredictRows = { render(options) -> Element, greenAt(p), inkOn(rgb), CELL_PX }
 *
 * Every text enters the DOM through textContent, and every style through the CSSOM (element.style), which a
 * Content-Security-Policy without 'unsafe-inline' still allows: the page needs no style sheet of its own for it. */
(() => {
  "use strict";
  const { colourAt, codes: CODE_COLOURS } = globalThis.lstmInterpColours;

  // matplotlib's "Greens" (ColorBrewer's 9-class sequential), evenly spaced from p = 0 to p = 1: the colour map of
  // the PNG figure, a single hue unlike the red and blue of activations.
  const GREENS = Object.freeze([[247, 252, 245], [229, 245, 224], [199, 233, 192], [161, 217, 155], [116, 196, 118],
    [65, 171, 93], [35, 139, 69], [0, 109, 44], [0, 68, 27]]);
  const CELL_PX = 15; // a column's width; 60 columns and the labels make a block about 960 pixels wide
  const ROW_PX = 18;
  const LABEL_PX = 58;
  const TEXT_BACKGROUND = "rgb(237, 237, 237)"; // the text row: a pale grey, unlike any shade of either scale
  const EMPTY = "rgb(250, 250, 250)"; // no value or no guesses here (a character outside the vocabulary)
  const MUTED = "#656d76";

  /** [r, g, b] of probability p (clamped to 0..1) on the green scale. */
  function greenAt(p) {
    const x = Math.min(1, Math.max(0, Number(p) || 0)) * (GREENS.length - 1);
    const j = Math.min(GREENS.length - 2, Math.floor(x)), t = x - j;
    return GREENS[j].map((v, c) => Math.round(v + t * (GREENS[j + 1][c] - v)));
  }

  /** Black text on light backgrounds and white on dark ones: the PNG figures' rule (lstm_interp/plots/_common.py). */
  function inkOn([r, g, b]) {
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255 < 0.45 ? "#fff" : "#000";
  }

  // How a character is drawn in a cell: whitespace and controls as visible stand-ins.
  function glyph(c, space) {
    if (c === " ") return space;
    if (c === "\n") return "↵";
    if (c === "\t") return "⇥";
    const code = c.codePointAt(0);
    if (code < 32) return String.fromCodePoint(0x2400 + code);
    return code === 127 ? "␡" : c;
  }
  const named = (c) => ({ " ": "space", "\n": "newline", "\t": "tab" })[c] || JSON.stringify(c);

  function div(className, text) {
    const node = document.createElement("div");
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function cell(row, col, className, text) {
    const node = div(className, text);
    Object.assign(node.style, {
      gridRow: String(row + 1), gridColumn: String(col + 2), height: `${ROW_PX}px`, lineHeight: `${ROW_PX}px`,
      textAlign: "center", overflow: "hidden", whiteSpace: "pre",
    });
    return node;
  }

  // Where each character goes: [block, column]; a line longer than perLine wraps, and a newline (drawn in its own
  // cell) ends its block, as lstm_interp.plots._common.layout places the PNG's cells.
  function layout(chars, perLine) {
    const places = [];
    let block = 0, col = 0;
    for (const c of chars) {
      if (col >= perLine) {
        block++;
        col = 0;
      }
      places.push([block, col]);
      col = c === "\n" ? perLine : col + 1;
    }
    return places;
  }

  /**
   * The figure over one window of text, as a <div class="predict-rows">.
   *
   * options:
   *   chars: the window's characters, one string per column.
   *   codes: per character the unit's colour code byte (colours.js's codes, value b / 127.5 - 1), or -1 / null for
   *     none; or instead
   *   values: per character the unit's display value in -1..1 (coloured by colourAt), or null for none.
   *   top: per character its guesses for the next character, [[char, probability], ...] best first, or null.
   *   next: per character the character that came next (null where unknown: the last one, say).
   *   k: guess rows (default: the most guesses any character has).
   *   unitLabel: the unit row's label ("unit 37"); describe(i): the tooltip of column i's unit cell.
   *   offset: the window's first position in the whole text (each column's data-i is offset + i).
   *   perLine: columns per block (60).
   *   mark: a position (offset-based) whose text cell is outlined: the character the reader chose.
   *   unknown: a Set of window indices outside the vocabulary: struck through, with no value and no guesses.
   *   note: a line under the legend (what the unit's colours mean, say).
   */
  function render(options) {
    const { chars, codes = null, values = null, top = [], next = [], unitLabel = "unit", describe = null,
      offset = 0, perLine = 60, mark = -1, unknown = new Set(), note = "" } = options;
    const k = options.k ?? top.reduce((most, guesses) => Math.max(most, guesses ? guesses.length : 0), 0);
    const root = div("predict-rows");
    Object.assign(root.style, {
      font: `12px/${ROW_PX}px ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace`,
      overflowX: "auto", color: "#1f2328",
    });
    root.dataset.k = String(k);
    root.dataset.chars = String(chars.length);
    const places = layout(chars, perLine);
    const blocks = [];
    const rowLabels = ["text", unitLabel, ...Array.from({ length: k }, (_, r) => `#${r + 1}`)];
    const rowNames = ["text", "unit", ...Array.from({ length: k }, (_, r) => String(r + 1))];
    function blockAt(b) {
      while (blocks.length <= b) {
        const block = div("pr-block");
        Object.assign(block.style, {
          display: "grid", gridTemplateColumns: `${LABEL_PX}px repeat(${perLine}, ${CELL_PX}px)`,
          gridAutoRows: `${ROW_PX}px`, marginBottom: "8px", width: "max-content",
        });
        rowLabels.forEach((label, r) => {
          const name = div("pr-label", label);
          Object.assign(name.style, {
            gridRow: String(r + 1), gridColumn: "1", fontSize: "10.5px", color: MUTED, textAlign: "right",
            paddingRight: "6px", whiteSpace: "nowrap", overflow: "hidden", textOverflow: "ellipsis",
          });
          block.append(name);
        });
        blocks.push(block);
      }
      return blocks[b];
    }

    chars.forEach((c, i) => {
      const [b, col] = places[i], block = blockAt(b), at = offset + i, outside = unknown.has(i);
      const text = cell(0, col, "pr-cell pr-text", glyph(c, " "));
      text.dataset.row = "text";
      text.dataset.i = String(at);
      text.style.background = TEXT_BACKGROUND;
      text.title = `position ${at}: ${named(c)}`;
      if (c === "\n" || c === "\t") text.style.color = MUTED;
      if (outside) {
        text.style.color = "#8c959f";
        text.style.background = "rgb(234, 238, 242)"; // the explorer's mark of a skipped character
        text.style.textDecoration = "line-through";
        text.title += " (outside the vocabulary: skipped)";
      }
      if (at === mark) {
        text.classList.add("pr-mark");
        text.style.outline = "1.5px solid #1f2328";
        text.style.outlineOffset = "-1.5px";
      }
      const code = codes ? codes[i] : null, value = values ? values[i] : null;
      const known = codes ? code !== null && code !== undefined && code >= 0 : value !== null && value !== undefined;
      const unit = cell(1, col, "pr-cell pr-unit");
      unit.dataset.row = "unit";
      unit.dataset.i = String(at);
      unit.style.background = outside || !known ? EMPTY : codes ? CODE_COLOURS[code] : colourAt(value);
      if (known && describe) unit.title = describe(i);
      block.append(text, unit);
      const guesses = outside ? null : top[i];
      for (let r = 0; r < k; r++) {
        const guess = guesses && guesses[r];
        const node = cell(2 + r, col, "pr-cell pr-guess", guess ? glyph(guess[0], "␣") : "");
        node.dataset.row = String(r + 1);
        node.dataset.i = String(at);
        if (guess) {
          const [g, p] = guess, rgb = greenAt(p);
          node.style.background = `rgb(${rgb.join(", ")})`;
          node.style.color = inkOn(rgb);
          node.title = `#${r + 1} after position ${at}: ${named(g)} ${(100 * p).toFixed(p < 0.1 ? 1 : 0)}%`;
          if (next[i] !== null && next[i] !== undefined && g === next[i]) {
            node.classList.add("pr-next");
            node.style.fontWeight = "800";
            node.title += " (came next)";
          }
        } else {
          node.style.background = EMPTY;
        }
        block.append(node);
      }
    });
    root.append(...blocks);

    // The key: a strip of the green scale, and what the shades and the bold mean.
    const key = div("pr-legend");
    Object.assign(key.style, { display: "flex", flexWrap: "wrap", alignItems: "center", gap: "4px 8px",
      font: "11.5px system-ui, sans-serif", color: MUTED, marginTop: "2px" });
    const strip = div("pr-legend-bar");
    const stops = Array.from({ length: 9 }, (_, j) => `rgb(${greenAt(j / 8).join(", ")})`).join(", ");
    Object.assign(strip.style, { width: "90px", height: "10px", border: "1px solid #d0d7de",
      background: `linear-gradient(to right, ${stops})` });
    const scale = document.createElement("span");
    scale.textContent = "0 → 1 probability of the next character";
    const words = document.createElement("span");
    words.className = "pr-legend-text";
    words.textContent = "darker green = more likely; bold = the character that came next; ␣ space, ↵ newline";
    key.append(strip, scale, words);
    if (note) {
      const line = document.createElement("span");
      line.textContent = note;
      key.append(line);
    }
    root.append(key);
    return root;
  }

  globalThis.lstmInterpPredictRows = Object.freeze({ render, greenAt, inkOn, CELL_PX });
})();
