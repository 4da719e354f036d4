"""Decoder LLMs (Llama, Mistral, Qwen2/3, Gemma-2/3, Phi-3) as backbones of the kit's regression/classification head.

A decoder's useful summary of an input is its last real token (causal attention: only that position has seen the
whole input), so decoders pool with `last-token` by default. Many decoder tokenizers define no pad token; the kit
pads with the end-of-sequence token and always right-pads, so positions stay 0..n-1 for every real token (left
padding would shift the rotary positions of every padded row unless position ids were passed).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

# model_type values of the decoder families the kit serves; others are recognised by their *ForCausalLM
# architecture unless they are a known encoder.
DECODER_TYPES = frozenset({
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3",
    "gemma3_text", "phi", "phi3", "phimoe", "gpt2", "gpt_neox", "gptj", "falcon", "olmo", "olmo2", "stablelm",
    "starcoder2", "cohere", "granite", "smollm3",
})
ENCODER_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "deberta", "deberta-v2", "electra", "distilbert",
                           "albert", "camembert", "mpnet", "longformer", "bigbird", "funnel", "modernbert"})


def is_decoder(config) -> bool:
    model_type = getattr(config, "model_type", "")
    if model_type in DECODER_TYPES:
        return True
    if model_type in ENCODER_TYPES or getattr(config, "is_encoder_decoder", False):
        return False
    return any(name.endswith("ForCausalLM") for name in (getattr(config, "architectures", None) or []))


def prepare_tokenizer(tokenizer, config) -> None:
    """Give a decoder tokenizer a pad token (its end-of-sequence token) and right padding, in place.

    The attention mask hides the padding, so which token pads does not change any real position's output.
    """
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            from kaggle_kit.errors import KitError

            raise KitError("the tokenizer defines no pad, end-of-sequence or unknown token to pad with")
        tokenizer.pad_token = fallback
        log.info("tokenizer has no pad token: padding with %r", fallback)
    tokenizer.padding_side = "right"
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id
