"""Data drift's PSI by hand: the sum, empty bins, the bins of a feature (from the baseline's edges, or around
a constant), and class PSI with an unseen label."""

from __future__ import annotations

import math

import numpy as np
import pytest
from drift_data import FEATURES

from serving_lambdas.drift import EPSILON, Baseline, FeatureBaseline, psi

# -- PSI by hand ------------------------------------------------------------------------------------


def test_psi_is_the_hand_computed_sum():
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx((0.25 - 0.5) * math.log(0.25 / 0.5)
                                                          + (0.75 - 0.5) * math.log(0.75 / 0.5))
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.274653, abs=1e-6)
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_an_empty_bin_counts_as_epsilon():
    assert EPSILON == 1e-4
    assert psi([0.5, 0.5], [1.0, 0.0]) == pytest.approx((1.0 - 0.5) * math.log(1.0 / 0.5)
                                                        + (EPSILON - 0.5) * math.log(EPSILON / 0.5))
    assert psi([0.0, 1.0], [0.0, 1.0]) == 0.0


def test_psi_needs_the_same_bins_on_both_sides():
    with pytest.raises(ValueError, match="psi needs the same bins on both sides, got 2 and 3"):
        psi([0.5, 0.5], [0.2, 0.3, 0.5])


def test_a_feature_is_binned_on_the_baseline_edges_with_open_outer_bins():
    feature = FeatureBaseline.from_histogram([0.0, 1.0, 2.0, 3.0], [2, 1, 1])
    assert feature.expected == (0.5, 0.25, 0.25)
    values = np.array([-5.0, 0.5, 1.0, 2.5, 99.0])  # below the first edge, bin 0, on a cut (bin 1), bin 2, above
    assert feature.counts(values) == [2, 1, 2]
    hand = ((0.4 - 0.5) * math.log(0.4 / 0.5) + (0.2 - 0.25) * math.log(0.2 / 0.25)
            + (0.4 - 0.25) * math.log(0.4 / 0.25))
    assert feature.psi(values) == pytest.approx(hand)


def test_a_feature_constant_in_training_has_bins_below_at_and_above_its_value():
    feature = FeatureBaseline.from_histogram([2.0], [])
    assert feature.psi(np.full(10, 2.0)) == 0.0
    assert feature.counts([1.0, 2.0, 2.0, 3.0]) == [1, 2, 1]
    assert feature.psi(np.array([2.0, 2.5])) == pytest.approx(psi([0.0, 1.0, 0.0], [0.0, 0.5, 0.5]))


def test_the_training_values_fall_into_the_bins_preprocessing_counted(iris):
    statistics, train = iris
    baseline = Baseline.from_statistics(statistics, "iris")
    for j, name in enumerate(FEATURES):
        counts = baseline.features[name].counts(train[:, 1 + j])
        assert counts == statistics["features"][name]["histogram"]["counts"], name
        assert baseline.features[name].psi(train[:, 1 + j]) == 0.0


def test_class_psi_by_hand_and_an_unseen_label_is_a_bin_of_its_own():
    baseline = Baseline.from_statistics(
        {"features": {"x": {"histogram": {"bin_edges": [0, 1], "counts": [4]}}},
         "class_distribution": {"a": 0.5, "b": 0.5}}, "hand")
    assert baseline.class_psi(["a", "a", "a", "b"]) == pytest.approx(psi([0.5, 0.5], [0.75, 0.25]))
    assert baseline.class_psi(["a", "b", "c", "c"]) == pytest.approx(psi([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]))
