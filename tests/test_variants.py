"""Variants: Pareto fronts, confusion matrices, changed predictions and per-layer diffs."""

from __future__ import annotations

import numpy as np

from core.progress import run
from core.pipeline.variants import (LayerSummary, Variant, changed_predictions, compare_layers, confusion_matrix,
                           layers_of_model, pareto_front, per_class_accuracy, predictions)


def test_pareto_front_keeps_only_undominated_points():
    sizes = [100, 50, 60, 10, 10, 5]
    scores = [0.99, 0.98, 0.97, 0.90, 0.95, 0.80]
    assert pareto_front(sizes, scores) == [5, 4, 1, 0]


def test_confusion_matrix_and_per_class_accuracy():
    labels = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 0, 2])
    m = confusion_matrix(predicted, labels, 3)
    assert m.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]] and m.sum() == 6
    assert per_class_accuracy(predicted, labels, 3).tolist() == [0.5, 1.0, 0.5]


def variant(i, predicted, labels, layers=()):
    return Variant(i, f"v{i}", None, 100, 0.9, 0.1, 1.0, tuple(layers), np.array(predicted), np.array(labels))


def test_changed_predictions_split_both_ways():
    labels = [0, 1, 2, 3]
    a, b = variant(0, [0, 1, 0, 0], labels), variant(1, [0, 0, 2, 0], labels)
    changed = changed_predictions(a, b)
    assert changed["now_wrong"].tolist() == [1] and changed["now_right"].tolist() == [2]


def test_compare_layers_lines_up_tensors():
    a = variant(0, [], [], [LayerSummary("fc1.weight", 100, 1.0, 32, 0, 400), LayerSummary("fc1.bias", 10, 1.0, 32, 0, 40)])
    b = variant(1, [], [], [LayerSummary("fc1.weight", 100, 0.1, 6, 5, 20)])
    rows = compare_layers(a, b)
    assert [r.name for r in rows] == ["fc1.weight", "fc1.bias"]
    assert rows[0].kept == (1.0, 0.1) and rows[0].bytes == (400, 20) and rows[1].bytes == (40, 0)


def test_predictions_and_original_layers(lenet300, mnist):
    predicted, labels = run(predictions(lenet300.module, mnist.test.subset(500)))
    assert predicted.shape == labels.shape == (500,) and (predicted == labels).mean() > 0.95
    layers = layers_of_model(lenet300.module)
    assert [r.name for r in layers] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]
    assert sum(r.bytes for r in layers) == 266_610 * 4
