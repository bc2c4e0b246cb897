"""Features of text, one value per character, to compare with a trace: quotes, line position, brackets, code.

Importing this package registers the built-in features in :data:`FEATURES`; see
:mod:`~lstm_interp.features.text_features` and :mod:`~lstm_interp.features.code_features` for their exact
definitions.
"""

from lstm_interp.features.code_features import inside_comment, inside_if_condition, inside_string_literal
from lstm_interp.features.feature_values import ConstantFeatureError, check_feature_values, feature_values
from lstm_interp.features.feature_window import busiest_window
from lstm_interp.features.registry import (
    FEATURE_KINDS,
    FEATURES,
    Feature,
    FeatureKind,
    UnknownFeatureError,
    compute_feature,
    get_feature,
    regex_spans,
    register_feature,
    register_regex_feature,
)
from lstm_interp.features.text_features import (
    brace_depth,
    bracket_depth,
    chars_to_line_end,
    indentation,
    inside_quotes,
    inside_url,
    paren_depth,
    position_in_line,
    start_of_word,
)

__all__ = [
    "FEATURES",
    "FEATURE_KINDS",
    "ConstantFeatureError",
    "Feature",
    "FeatureKind",
    "UnknownFeatureError",
    "brace_depth",
    "bracket_depth",
    "busiest_window",
    "chars_to_line_end",
    "check_feature_values",
    "compute_feature",
    "feature_values",
    "get_feature",
    "indentation",
    "inside_comment",
    "inside_if_condition",
    "inside_quotes",
    "inside_string_literal",
    "inside_url",
    "paren_depth",
    "position_in_line",
    "regex_spans",
    "register_feature",
    "register_regex_feature",
    "start_of_word",
]
