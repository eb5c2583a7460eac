"""Quality metrics and calibration."""

from __future__ import annotations

import numpy as np

from cnai.model.predictor import softmax
from models.evaluate import classification_metrics, expected_calibration_error, fit_temperature


def test_ece_is_zero_when_confidence_matches_accuracy() -> None:
    # 10 rows at confidence 0.8, 8 of them right
    probs = np.tile([0.8, 0.2], (10, 1))
    labels = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(probs, labels) < 1e-9


def test_ece_of_an_overconfident_model() -> None:
    probs = np.tile([0.99, 0.01], (10, 1))
    labels = np.array([0] * 5 + [1] * 5)
    assert abs(expected_calibration_error(probs, labels) - 0.49) < 1e-6


def test_fit_temperature_recovers_the_generating_temperature() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 5)) * 2
    labels = np.array([rng.choice(5, p=p) for p in softmax(true_logits)])
    fitted = fit_temperature(true_logits * 3.0, labels)  # an overconfident model: logits 3x too large
    assert 2.6 < fitted < 3.4


def test_classification_metrics() -> None:
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0], [0.1, 0.1, 0.8]])
    labels = np.array([0, 1, 1, 2])
    m = classification_metrics(probs, labels, ["a", "b", "c"])
    assert m["accuracy"] == 0.75
    assert m["per_class_f1"] == {"a": 2 / 3, "b": 2 / 3, "c": 1.0}
    assert abs(m["macro_f1"] - (2 / 3 + 2 / 3 + 1) / 3) < 1e-9
