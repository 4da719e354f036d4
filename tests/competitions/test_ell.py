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


def test_instruct_format_renders_the_essay_with_the_tokenizers_chat_template():
    from kaggle_kit.predict.inference import chat_renderer

    class Templated:
        chat_template = "x"

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            return "<|user|>" + messages[0]["content"] + "<|end|>"

    df = pd.DataFrame({"text_id": ["a"], "full_text": ["My essay."]})
    ctx = InputContext(sep_token="[SEP]", input_format="instruct", seed=0, chat=chat_renderer(Templated()))
    (text,) = ELL.build_inputs(df, ctx)
    assert text.startswith("<|user|>Rate this essay") and text.endswith("My essay.<|end|>")
    plain = InputContext(sep_token="[SEP]", input_format="instruct", seed=0, chat=chat_renderer(object()))
    assert ELL.build_inputs(df, plain)[0].startswith("user: Rate this essay")


def test_a_template_starting_with_bos_gives_one_bos_after_tokenizing():
    from transformers import AutoTokenizer

    from kaggle_kit.data.batching import tokenize
    from kaggle_kit.models.model import default_model_path
    from kaggle_kit.predict.inference import chat_renderer

    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    tokenizer.bos_token = tokenizer.cls_token  # MiniLM adds [CLS] first, as Gemma's tokenizer adds <bos>
    tokenizer.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    df = pd.DataFrame({"text_id": ["a"], "full_text": ["My essay."]})
    ctx = InputContext(sep_token="[SEP]", input_format="instruct", seed=0, chat=chat_renderer(tokenizer))
    (ids,) = tokenize(tokenizer, ELL.build_inputs(df, ctx), 64)
    assert ids.count(tokenizer.cls_token_id) == 1 and ids[0] == tokenizer.cls_token_id
