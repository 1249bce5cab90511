"""Tiny seeded random models, offline: for experiments, checks and tests.

Every parameter is random, with norm weights near 1 and non-zero biases (the defaults 1 and 0
would hide a missing weight or bias), float64 by default where exactness is checked. The
word-level tokenizer has bos, eos and pad tokens and a few dozen words; models built from a
config alone (``HookedTransformer(cfg)``) have no tokenizer at all, which tlscopes also takes.

Example:
    >>> from tlscopes.testing.toy import build_bridge  # doctest: +SKIP
    >>> model = build_bridge()  # a 2-layer Llama-style TransformerBridge  # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch

WORDS = (
    "the a capital of france is paris rome italy city and cat dog sat on mat one two three "
    "four five six seven eight nine ten red blue green house tree river mountain big small "
    "liberal conservative person grew up in south columbia studied at ich bin hier english "
    "german , . : ?"
).split()


_TOKENIZER_DIR: str | None = None


def toy_text(length: int) -> str:
    """A text of `length` tokens for the toy tokenizer, its BOS included: the tokenizer's words
    in turn, one token each (e.g. a long prompt for a model built with a long context,
    ``build_bridge(max_position_embeddings=8192)``)."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        raise ValueError(
            f"length counts the BOS and at least one word, an int >= 2; got {length!r}"
        )
    words = [word for word in WORDS if word.isalpha()]
    return " ".join(words[index % len(words)] for index in range(length - 1))


def build_tokenizer(**options: Any) -> Any:
    """A word-level tokenizer (offline) with bos, eos and pad, loaded from a saved directory.

    TransformerLens re-loads tokenizers by their directory, so it is saved once per process.

    Args:
        options: passed to ``AutoTokenizer.from_pretrained`` (e.g. ``padding_side="left"``).
    """
    global _TOKENIZER_DIR
    from transformers import AutoTokenizer

    if _TOKENIZER_DIR is None:
        directory = tempfile.mkdtemp(prefix="tlscopes-tokenizer-")
        _word_level_tokenizer().save_pretrained(directory)
        _TOKENIZER_DIR = directory
    return AutoTokenizer.from_pretrained(_TOKENIZER_DIR, **options)


def _word_level_tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<bos>", "<eos>", "<pad>", "<unk>"]
    vocab = {token: index for index, token in enumerate(specials + WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random; norm weights near 1 and biases non-zero, seeded."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float64)
            leaf = name.rsplit(".", 1)[-1]
            is_norm = any(key in name for key in ("ln", "norm")) and param.ndim == 1
            if is_norm and leaf in ("w", "weight"):
                param.copy_(1.0 + 0.5 * noise)
            elif param.ndim == 1:
                param.copy_(0.2 * noise)
            else:
                param.copy_(noise / param.shape[-1] ** 0.5)
    return model


def build_hooked(
    *,
    normalization_type: str = "LN",
    positional_embedding_type: str = "standard",
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    **overrides: Any,
) -> Any:
    """A tiny HookedTransformer (TransformerLens 3.x) with random weights."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    tokenizer = build_tokenizer()
    config = dict(
        n_layers=2,
        d_model=16,
        n_heads=2,
        d_head=8,
        d_mlp=32,
        d_vocab=len(tokenizer),
        n_ctx=32,
        act_fn="gelu",
        normalization_type=normalization_type,
        positional_embedding_type=positional_embedding_type,
        dtype=dtype,
        seed=seed,
    )
    config.update(overrides)
    model = HookedTransformer(HookedTransformerConfig(**config), tokenizer=tokenizer)
    return randomize_(model, seed).eval()


def _build_hf(config_class: Any, model_class: Any, config: dict, dtype: torch.dtype, seed: int):
    """A Hugging Face model of `model_class` from `config` (seeded), randomised, in `dtype`."""
    torch.manual_seed(seed)
    model = model_class(config_class(**config)).to(dtype)
    return randomize_(model, seed).eval()


def build_hf_llama(*, dtype: torch.dtype = torch.float64, seed: int = 0, **overrides: Any) -> Any:
    """A tiny Hugging Face Llama (RMSNorm, rotary) with random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = dict(
        vocab_size=len(build_tokenizer()),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
        tie_word_embeddings=False,
    )
    config.update(overrides)
    return _build_hf(LlamaConfig, LlamaForCausalLM, config, dtype, seed)


def build_hf_gpt2(*, dtype: torch.dtype = torch.float64, seed: int = 0) -> Any:
    """A tiny Hugging Face GPT-2 (LayerNorm with bias, absolute positions) with random weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = dict(
        vocab_size=len(build_tokenizer()),
        n_embd=16,
        n_layer=2,
        n_head=2,
        n_positions=32,
        bos_token_id=0,
        eos_token_id=1,
        tie_word_embeddings=False,
    )
    return _build_hf(GPT2Config, GPT2LMHeadModel, config, dtype, seed)


def build_bridge(hf_model: Any | None = None, **overrides: Any) -> Any:
    """A TransformerBridge around a tiny Hugging Face model (Llama by default)."""
    from transformer_lens.model_bridge import TransformerBridge

    hf_model = build_hf_llama(**overrides) if hf_model is None else hf_model
    dtype = next(hf_model.parameters()).dtype
    name = "tiny-" + hf_model.config.model_type
    return TransformerBridge.boot_transformers(
        name, hf_model=hf_model, tokenizer=build_tokenizer(), dtype=dtype
    ).eval()
