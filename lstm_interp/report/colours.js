/* lstm_interp's colour scale, in one place for every page that colours activations: the static report (inlined
 * by lstm_interp/report/html_report.py before report.js) and the live explorer. A classic script, not a module, so
 * that a page opened from disk (file://, where browsers refuse module imports) can run it; it defines one global,
 *
 *   globalThis.lstmInterpColours = { anchors, colourAt(x), codes }
 *
 * where codes[b] is the CSS colour of display code byte b, whose value is b / 127.5 - 1 (the codes of
 * lstm_interp/report/_encode.py, display_codes). Everything in it is frozen: pages share it and must not alter it. */
(() => {
  "use strict";
  // Diverging red-white-blue scale, the paper's and the PNG figures' convention: -1 red, 0 white, +1 blue (after
  // ColorBrewer RdBu), its ends lightened so that black text on them keeps a contrast ratio above 5.
  const ANCHORS = Object.freeze([[-1, [222, 84, 70]], [-0.5, [247, 176, 150]], [0, [247, 247, 247]],
    [0.5, [166, 206, 227]], [1, [58, 132, 193]]].map(([x, rgb]) => Object.freeze([x, Object.freeze(rgb)])));
  // The CSS colour of value x in [-1, 1] (clamped outside it): linear in RGB between the two anchors around x.
  function colourAt(x) {
    let j = 1;
    while (j < ANCHORS.length - 1 && x > ANCHORS[j][0]) j++;
    const [x0, c0] = ANCHORS[j - 1], [x1, c1] = ANCHORS[j];
    const t = Math.min(1, Math.max(0, (x - x0) / (x1 - x0)));
    return `rgb(${c0.map((v, k) => Math.round(v + t * (c1[k] - v))).join(", ")})`;
  }
  // One colour per code byte, computed once: recolouring a page is then a table lookup per character.
  const COLOURS = Object.freeze(Array.from({ length: 256 }, (_, b) => colourAt(b / 127.5 - 1)));
  globalThis.lstmInterpColours = Object.freeze({ anchors: ANCHORS, colourAt, codes: COLOURS });
})();
