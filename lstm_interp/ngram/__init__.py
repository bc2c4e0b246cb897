"""Character n-gram baselines (the paper's Section 4.3): interpolated modified Kneser–Ney models for n = 1 … 20."""

from lstm_interp.ngram.ngram_model import NGramModel

__all__ = ["NGramModel"]
