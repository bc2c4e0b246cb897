"""The Hugging Face Hub: open any model (with a bundled copy offline), publish models, model cards.

Unlike the top-level package, this one imports its parts when imported: two of its names, ``load_pretrained`` and
``push_to_hub``, are also the names of its modules, and a lazy export would be shadowed by the module as soon as
that module is imported. It costs little: it imports huggingface_hub and torch, never Lightning or matplotlib.
"""

from lstm_interp.hub.load_pretrained import load_pretrained
from lstm_interp.hub.push_to_hub import push_to_hub
from lstm_interp.models.hub_files import RepoUnavailableError, hub_files
from lstm_interp.models.model_card import make_model_card, save_model_card
from lstm_interp.models.model_files import PRETRAINED

__all__ = [
    "PRETRAINED",
    "RepoUnavailableError",
    "hub_files",
    "load_pretrained",
    "make_model_card",
    "push_to_hub",
    "save_model_card",
]
