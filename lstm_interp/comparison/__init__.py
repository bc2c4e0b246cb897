"""The LSTM against n-gram baselines, character by character (Karpathy, Johnson & Fei-Fei 2015, Sections 4.3-4.4).

- :func:`char_log_probs`: the model's log-probability of every character of a text (exact, float32);
- :class:`NGramBaseline`: a Kneser–Ney n-gram fitted on a string, scoring strings the same way;
- :func:`class_loss`: both models' mean loss per character class (newline, whitespace, letters, quotes, ...);
- :func:`brace_study`: both models' probability of each ``}`` against the distance to its ``{`` (the paper's Fig. 6);
- :func:`error_breakdown`: the LSTM's errors sorted by the paper's oracles (n-gram, memory, rare words, word model,
  punctuation, boost; the paper's Fig. 7).

All of them score the characters ``text[1:]``: per-character arrays have ``len(text) - 1`` entries, entry ``t - 1``
being ``log P(text[t] | text[:t])``.
"""

from lstm_interp.comparison.brace_study import BraceBin, BraceStudy, NoMatchedBracesError, brace_study
from lstm_interp.comparison.char_classes import CHAR_CLASSES, char_class
from lstm_interp.comparison.char_log_probs import char_log_probs
from lstm_interp.comparison.class_loss import ClassLoss, ClassLossRow, class_loss
from lstm_interp.comparison.error_breakdown import ErrorBreakdown, ErrorCategory, error_breakdown
from lstm_interp.comparison.ngram_baseline import NGramBaseline

__all__ = [
    "CHAR_CLASSES",
    "BraceBin",
    "BraceStudy",
    "ClassLoss",
    "ClassLossRow",
    "ErrorBreakdown",
    "ErrorCategory",
    "NGramBaseline",
    "NoMatchedBracesError",
    "brace_study",
    "char_class",
    "char_log_probs",
    "class_loss",
    "error_breakdown",
]
