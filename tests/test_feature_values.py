"""feature_values / check_feature_values: the one check of a feature's values before any unit is scored."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_interp.features import ConstantFeatureError, check_feature_values, feature_values


def test_values_of_several_texts_are_computed_apart_and_joined():
    # An unclosed quote in the first text must not run into the second.
    values = feature_values("inside_quotes", ['a "b', 'c "d" e'])
    first, second = [False, False, True, True], [False, False, True, True, False, False, False]
    assert values.tolist() == [*first, *second]


def test_a_constant_feature_names_itself_its_value_and_the_text():
    with pytest.raises(ConstantFeatureError, match=r"feature 'inside_quotes' is constant \(False\) over all 3 "
                       r"characters of the probe texts: its correlation or AUC with any unit is undefined; drop it"):
        feature_values("inside_quotes", ["abc"], over="the probe texts", hint="drop it")
    assert issubclass(ConstantFeatureError, ValueError)


def test_length_mismatch():
    with pytest.raises(ValueError, match="feature 'f' has 2 values but the trace has 3 characters"):
        check_feature_values(np.array([0.0, 1.0]), "f", 3)
    check_feature_values(np.array([0.0, 1.0, 0.0]), "f", 3)  # varies, right length: no error
