"""``write_experiment_folder``: the output folder of an experiment (ablation, steering, probes) as one whole write.

An experiment's folder holds its result as JSON (``<kind>.json``), its figure (``<kind>.png``) or several figures
named by the experiment (one per probed feature), and the ``manifest.json`` of them all: the model, the texts, the
arguments. It is built beside the target and swapped into place (:func:`lstm_interp._io.atomic_folder`), so a killed
run leaves the previous result or none, and a rerun leaves nothing of the last one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from lstm_interp._io import atomic_folder, atomic_write_text
from lstm_interp.manifest import check_replaceable, write_manifest
from lstm_interp.plots.save import save_figure


def experiment_names(kind: str) -> tuple[str, str]:
    """The files of a ``kind`` folder: ``(<kind>.json, <kind>.png)``."""
    return f"{kind}.json", f"{kind}.png"


def check_experiment_folder(
    out: str | os.PathLike, kind: str, *, overwrite: bool = False, names: Iterable[str] | None = None
) -> None:
    """Refuse, before the experiment runs, an ``out`` that holds files a ``kind`` run does not write.

    Args:
        out: the folder.
        kind: the experiment (``"ablation"``, ``"steer"``, ``"probe"``).
        overwrite: accept any folder (``--overwrite``).
        names: the files a ``kind`` run writes besides its manifest (default :func:`experiment_names`).

    Raises:
        FileExistsError, NotADirectoryError: see :func:`lstm_interp.manifest.check_replaceable`.
    """
    check_replaceable(out, kind, experiment_names(kind) if names is None else names, overwrite=overwrite)


def write_experiment_folder(
    out: str | os.PathLike,
    kind: str,
    result: Mapping[str, Any],
    figure: Figure | Mapping[str, Figure],
    *,
    model: torch.nn.Module,
    texts: Mapping[str, str],
    arguments: Mapping[str, Any],
    overwrite: bool = False,
    result_name: str | None = None,
) -> Path:
    """Write ``out/<kind>.json``, ``out/<kind>.png`` and ``out/manifest.json`` as one folder, replacing ``out``.

    Args:
        out: the folder (its parents are created).
        kind: ``"ablation"``, ``"steer"``, ...: the files' stem and the manifest's kind.
        result: the JSON-safe result (``AblationStudy.to_dict()``, say).
        figure: its figure, or several by file name (``{"inside_quotes.png": figure, ...}``).
        model, texts, arguments: what made it, for the manifest.
        overwrite: replace ``out`` even if it holds files the earlier run did not write.
        result_name: the JSON file's name (default ``<kind>.json``).

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: ``out`` holds files a ``kind`` run does not write (nothing is changed).
        ValueError: a figure name that is not a plain ``.png`` file name.
    """
    json_name, figure_name = experiment_names(kind)
    json_name = result_name or json_name
    figures = {figure_name: figure} if isinstance(figure, Figure) else dict(figure)
    bad = [name for name in figures if Path(name).name != name or not name.endswith(".png")]
    if bad:
        raise ValueError(f"figure names must be plain .png file names, got {bad}")
    # Checked again just before writing: the folder may have changed while the experiment ran.
    check_experiment_folder(out, kind, overwrite=overwrite, names=[json_name, *figures])
    with atomic_folder(out) as staging:
        atomic_write_text(staging / json_name, json.dumps(result, indent=1, allow_nan=False, ensure_ascii=False) + "\n")
        for name, each in figures.items():
            save_figure(each, staging / name)
        write_manifest(staging, kind, model=model, texts=texts, arguments=arguments)
    return Path(out)
