"""Put finding sections and their pictures into a bundled model card folder (``model_cards/<name>``), whole.

Shared by the benchmark scripts that add a section to a card (``url_cell_study.py``, ``card_units.py``): the
section list of ``results.json`` (a section of the same title is replaced), the pictures under ``images/``, the
card's README.md and the manifest redone, and the folder swapped in whole (a kill leaves the previous card).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from lstm_interp import load_pretrained
from lstm_interp._io import atomic_folder, atomic_write_text
from lstm_interp.manifest import model_provenance, write_manifest
from lstm_interp.models.model_card import save_model_card


def add_card_sections(card: Path, sections: list[dict[str, Any]], pictures: dict[str, Path]) -> None:
    """Add ``sections`` (``{"title", "text", "image"?}``) to the card folder ``card``, with ``pictures``
    (``{"images/name.png": path}``) copied in."""
    model = load_pretrained(card).eval()
    results = json.loads((card / "results.json").read_text(encoding="utf-8"))
    titles = {section["title"] for section in sections}
    with atomic_folder(card) as staging:
        shutil.copytree(card, staging, dirs_exist_ok=True)
        for name, path in pictures.items():
            shutil.copyfile(path, staging / name)
        kept = [s for s in results.get("sections", []) if s.get("title") not in titles]
        results["sections"] = [*kept, *sections]
        atomic_write_text(staging / "results.json", json.dumps(results, indent=1) + "\n")
        save_model_card(staging, final_dir=card)
        write_manifest(staging, "model", model=model_provenance(model, local_paths=False),
                       arguments={"repo_id": results.get("repo_id")})  # fmt: skip
    print(f"wrote {', '.join(repr(t) for t in titles)} and {', '.join(pictures) or 'no pictures'} into {card}")
