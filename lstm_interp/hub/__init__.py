"""The Hugging Face Hub: load the pretrained models (with a bundled copy offline), publish models, model cards."""

from lstm_interp.hub.load_pretrained import PRETRAINED, load_pretrained
from lstm_interp.hub.model_card import make_model_card, save_model_card
from lstm_interp.hub.push_to_hub import push_to_hub
from lstm_interp.models.char_lstm import RepoUnavailableError

__all__ = ["PRETRAINED", "RepoUnavailableError", "load_pretrained", "make_model_card", "push_to_hub", "save_model_card"]
