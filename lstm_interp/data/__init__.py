"""The data layer: a text source encoded once into a memory-mapped cache, and the datasets read from it."""

from lstm_interp.data.char_datamodule import CharDataModule
from lstm_interp.data.corpus import BUNDLED_CORPORA, EncodedCorpus
from lstm_interp.data.stream_batches import StreamBatches
from lstm_interp.data.window_dataset import WindowDataset

__all__ = ["BUNDLED_CORPORA", "CharDataModule", "EncodedCorpus", "StreamBatches", "WindowDataset"]
