"""A plugin's `Competition` is checked field by field when it is declared: one line naming the plugin and the
field, not a traceback from inside a run."""

import dataclasses

import pytest

from competitions.ell import COMPETITION as ELL
from kaggle_kit.competition import BUILT_IN_LOSSES, ExtraFile, Schema, Target


def test_the_built_in_loss_names_are_the_losses_module_s():
    from kaggle_kit.tasks.losses import LOSSES

    assert BUILT_IN_LOSSES == tuple(LOSSES)


@pytest.mark.parametrize(("changes", "message"), [
    ({"metric": "roc_auc"}, "ell: metric 'roc_auc' is a str, not a kaggle_kit.tasks.metrics.Metric; did you mean "
                            "AUC? use one of kaggle_kit.tasks.metrics' MCRMSE, PEARSON, LOG_LOSS, AUC"),
    ({"default_loss": "focal"}, "ell: default_loss 'focal' is not a built-in loss or one of the plugin's losses "
                                "(rmse, mse, smoothl1, bce, pearson, cross-entropy)"),
    ({"default_loss": "rmse", "losses": {"focal": "not a spec"}},
     "ell: losses['focal'] 'not a spec' is a str, not a kaggle_kit.tasks.losses.LossSpec"),
    ({"name": "my comp"}, "Competition name 'my comp' must be letters, digits"),
    ({"name": None}, "Competition name None must be"),
    ({"title": 3}, "ell: title 3 must be a string"),
    ({"kaggle_slug": "Feedback Prize"}, "ell: kaggle_slug 'Feedback Prize' must be the competition's URL name"),
    ({"schema": {"id_column": "text_id"}}, "ell: schema {'id_column': 'text_id'} must be a kaggle_kit.competition"
                                           ".Schema"),
    ({"build_inputs": "full_text"}, "ell: build_inputs 'full_text' must be a function"),
    ({"fold_strategy": None}, "ell: fold_strategy None must be a function"),
    ({"input_formats": "essay"}, "ell: input_formats 'essay' must be a non-empty tuple of names"),
    ({"input_formats": ()}, "ell: input_formats () must be a non-empty tuple of names"),
    ({"presets": {"quick": 256}}, "ell: presets {'quick': 256} must map preset names to settings"),
    ({"hidden_test_size": 0}, "ell: hidden_test_size 0 must be a whole number of rows, at least 1"),
    ({"extra_files": (ExtraFile("a.csv"), "b.csv")}, "ell: extra_files (ExtraFile(name='a.csv'"),
    ({"row_files": ["essay_id"]}, "ell: row_files ['essay_id'] must be a tuple of RowFile(...)"),
])
def test_a_bad_competition_declaration_names_the_plugin_and_the_field(changes, message):
    with pytest.raises(ValueError) as err:
        dataclasses.replace(ELL, **changes)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_plugin_s_own_loss_is_a_valid_default_loss():
    from kaggle_kit.tasks.losses import LOSSES

    assert dataclasses.replace(ELL, losses={"my-rmse": LOSSES["rmse"]}, default_loss="my-rmse").default_loss == \
        "my-rmse"


@pytest.mark.parametrize(("schema", "message"), [
    (dict(id_column="", input_columns=("t",), targets=(Target("y"),)), "schema: id_column '' must be a column name"),
    (dict(id_column="id", input_columns="full_text", targets=(Target("y"),)),
     "schema: input_columns 'full_text' must be a tuple of column names"),
    (dict(id_column="id", input_columns=("t",), targets=()), "schema: targets () must be a non-empty tuple"),
    (dict(id_column="id", input_columns=("t",), targets=("y",)), "schema: targets ('y',) must be a non-empty tuple"),
])
def test_a_bad_schema_is_one_line(schema, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        Schema(**schema)
