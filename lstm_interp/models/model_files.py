"""What a saved model is made of: its files, the card metadata of every lstm_interp model, the official models.

Defined once and read by the network's save and load (:mod:`lstm_interp.models.model_folder`), the model card
(:mod:`lstm_interp.models.model_card`), :func:`lstm_interp.load_pretrained` and :func:`lstm_interp.push_to_hub`.
"""

from __future__ import annotations

from lstm_interp.manifest import MANIFEST_NAME

CONFIG_NAME = "config.json"
VOCAB_NAME = "vocab.json"
WEIGHTS_NAME = "model.safetensors"
# The whole saved model, in the order it is read and uploaded.
MODEL_FILES = (CONFIG_NAME, VOCAB_NAME, WEIGHTS_NAME)
# What a model folder may hold besides: the card, the evaluation's results and images, the manifest. A folder
# holding anything else is not replaced by save_pretrained.
MODEL_FOLDER_NAMES = (*MODEL_FILES, "README.md", "results.json", "images", MANIFEST_NAME)

# The card metadata of every lstm_interp model, defined once: the mixin's class keywords and the card of
# lstm_interp.models.model_card both read these.
LIBRARY_NAME = "lstm_interp"
MODEL_TAGS: tuple[str, ...] = ("char-rnn", "lstm", "interpretability", "character-level", "text-generation")
PAPER_URL = "https://arxiv.org/abs/1506.02078"

# The one table of pretrained models: canonical short name -> Hub repo id (the bundled folder has the short name).
PRETRAINED: dict[str, str] = {
    "novel": "lstm-interp/char-lstm-war-and-peace",
    "code": "lstm-interp/char-lstm-linux-kernel",
    "foldoc": "lstm-interp/char-lstm-foldoc",  # FOLDOC, the Free On-line Dictionary of Computing: the URL cell
}
