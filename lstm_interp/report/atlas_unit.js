/* An atlas unit page: its card (#card-data, written by lstm_interp/report/atlas_pages.py) drawn by atlas_card.js. */
(() => {
  "use strict";
  const card = JSON.parse(document.getElementById("card-data").textContent);
  const meta = JSON.parse(document.getElementById("atlas-meta").textContent);
  const atlasCard = globalThis.lstmInterpAtlasCard;
  document.getElementById("card").replaceChildren(atlasCard.render(card, meta));
  document.getElementById("legend").replaceChildren(atlasCard.legend(atlasCard.shownName(card)));
  document.body.dataset.renders = "1";
})();
