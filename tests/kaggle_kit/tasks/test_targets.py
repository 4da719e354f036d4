import numpy as np
import pytest

from kaggle_kit.competition import Schema, Target
from kaggle_kit.tasks.targets import output_columns, output_slices, prior_prediction

EFFECT = Target("effect", kind="multiclass", classes=("Ineffective", "Adequate", "Effective"))


def test_widths_and_columns_per_kind():
    targets = [Target("score"), EFFECT, Target("spam", kind="binary")]
    assert [t.width for t in targets] == [1, 3, 1]
    assert output_columns(targets) == ["score", "Ineffective", "Adequate", "Effective", "spam"]
    assert output_slices(targets) == [slice(0, 1), slice(1, 4), slice(4, 5)]
    assert Target("spam", kind="binary").classes == (0, 1)


def test_submission_columns_follow_the_submit_format():
    schema = Schema("id", ("text",), (EFFECT, Target("score", low=1, high=6, step=1, submit="integer")))
    assert schema.submission_columns() == ["id", "Ineffective", "Adequate", "Effective", "score"]
    labelled = Schema("id", ("text",), (Target("effect", kind="multiclass", classes=("a", "b"), submit="label"),))
    assert labelled.submission_columns() == ["id", "effect"] and labelled.output_columns == ["a", "b"]


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "ordinal"}, "kind 'ordinal' is not one of"),
    ({"kind": "multiclass"}, "needs its classes"),
    ({"kind": "binary", "classes": ("a", "b", "c")}, "has 2 classes"),
    ({"kind": "multiclass", "classes": ("a", "a")}, "repeat a label"),
    ({"classes": ("a", "b")}, "a regression target has no classes"),
    ({"kind": "multiclass", "classes": ("a", "b"), "submit": "integer"}, "submit='integer' is not one of"),
    ({"low": 1, "high": 5, "step": 0.5, "submit": "integer"}, "needs whole-number values"),
])
def test_impossible_declarations_fail_when_the_plugin_is_written(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Target("t", **kwargs)


def test_class_columns_must_not_collide_with_other_columns():
    with pytest.raises(ValueError, match="'text' used twice"):
        Schema("id", ("text",), (Target("label", kind="multiclass", classes=("text", "other")),))


def test_grid_of_each_kind():
    assert Target("s", low=1, high=6, step=1).grid().tolist() == [1, 2, 3, 4, 5, 6]
    assert Target("s", allowed=(0.5, 0, 1)).grid().tolist() == [0, 0.5, 1]
    assert Target("s", low=0, high=1).grid() is None
    assert EFFECT.grid().tolist() == [0, 1, 2]


def test_prior_prediction_is_the_mean_or_the_class_frequencies():
    y = np.array([[3.0, 0, 1], [4.0, 2, 0], [5.0, 2, 1], [4.0, 2, 1]])
    prior = prior_prediction(y, [Target("score"), EFFECT, Target("spam", kind="binary")])
    assert prior.tolist() == [4.0, 0.25, 0.0, 0.75, 0.75]
    assert np.array_equal(prior_prediction(y[:, :1], [Target("score")]), y[:, :1].mean(axis=0))
