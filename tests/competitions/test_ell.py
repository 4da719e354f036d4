import numpy as np
import pandas as pd

from kaggle_kit.competition import InputContext
from kaggle_kit.registry import get_competition

ELL = get_competition("ell")


def test_input_is_the_essay_text():
    df = pd.DataFrame({"text_id": ["a"], "full_text": ["Dear principal, ..."]})
    ctx = InputContext(sep_token="[SEP]", input_format="essay", seed=0)
    assert ELL.build_inputs(df, ctx) == ["Dear principal, ..."]


def test_postprocess_clips_to_score_range():
    assert np.array_equal(ELL.postprocess(np.array([[0.2, 3.3, 5.9]])), np.array([[1.0, 3.3, 5.0]]))


def test_targets_accept_half_steps_only():
    target = ELL.schema.targets[0]
    assert target.problem(1.0) is None and target.problem(4.5) is None
    assert target.problem(4.25) is not None and target.problem(5.5) is not None


def test_quick_preset_is_cpu_sized():
    quick = ELL.presets["quick"]
    assert quick["max_len"] <= 256 and quick["epochs"] == 1 and len(quick["train_folds"]) == 1
