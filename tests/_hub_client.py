"""Run Hub steps in a fresh Python process and print one JSON result per step (used by ``test_hub.py``).

huggingface_hub reads ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_HOME``, ... once, when it is imported; so each
environment the tests try gets its own process, started with that environment, rather than patched constants.

Usage: ``python _hub_client.py STEPS_JSON`` where STEPS_JSON is a list of steps:

* ``{"op": "load", "source": ..., "kwargs": {...}, "reference": DIR, "reference_dtype": "float16",
  "bundled_root": DIR}``: ``load_pretrained(source, **kwargs)`` (``kwargs["dtype"]`` is a dtype name), its logits on
  a fixed text compared with those of the model in the folder ``reference`` (its weights first rounded to
  ``reference_dtype`` if given); ``bundled_root`` sets ``lstm_interp.hub.load_pretrained.BUNDLED_ROOT``.
* ``{"op": "push", "source": DIR, "repo_id": ..., "kwargs": {...}}``: ``push_to_hub(source, repo_id, **kwargs)``.

Each result has ``ok``, the ``lstm_interp`` log records (``logs``), and either the step's outputs or the error's
``type``, base classes (``types``) and ``message``.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from typing import Any

import torch

from lstm_interp import CharLSTM, load_pretrained, push_to_hub

TEXT = "hello world"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname}: {record.getMessage()}")


def _load(step: dict[str, Any]) -> dict[str, Any]:
    module = importlib.import_module("lstm_interp.hub.load_pretrained")
    module.BUNDLED_ROOT = step.get("bundled_root")
    kwargs = dict(step.get("kwargs", {}))
    if "dtype" in kwargs:
        kwargs["dtype"] = getattr(torch, kwargs["dtype"])
    model = load_pretrained(step["source"], **kwargs)
    result: dict[str, Any] = {"dtype": str(model.head.weight.dtype).removeprefix("torch."), "training": model.training}
    if step.get("reference"):
        reference = CharLSTM.from_pretrained(step["reference"])
        if step.get("reference_dtype"):
            reference.to(getattr(torch, step["reference_dtype"])).float()
        tokens = reference.vocab.encode(TEXT)[None]
        with torch.no_grad():
            expected, _ = reference(tokens)
            got, _ = model.float()(tokens)
        result["equal"] = torch.equal(expected, got)
        result["max_abs_diff"] = float((expected - got).abs().max())
        result["vocab_equal"] = model.vocab.chars == reference.vocab.chars
    return result


def _push(step: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(step.get("kwargs", {}))
    if "dtype" in kwargs:
        kwargs["dtype"] = getattr(torch, kwargs["dtype"])
    return {"url": push_to_hub(step["source"], step["repo_id"], **kwargs)}


def main(steps: list[dict[str, Any]]) -> None:
    records = _Records()
    logger = logging.getLogger("lstm_interp")
    logger.addHandler(records)
    logger.setLevel(logging.DEBUG)
    for step in steps:
        records.lines.clear()
        try:
            result = {"ok": True, **{"load": _load, "push": _push}[step["op"]](step)}
        except Exception as err:
            result = {
                "ok": False,
                "type": type(err).__name__,
                "types": [cls.__name__ for cls in type(err).__mro__],
                "message": str(err),
            }
        result["logs"] = list(records.lines)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
