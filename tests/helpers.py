"""Tiny, seeded models for fast exact tests: HookedTransformer, TransformerBridge, tokenizer.

Norm weights and biases are randomised (the defaults 1 and 0 would hide a missing weight or
bias), and float64 is the default where exactness is checked.
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch

from tlscopes.testing.toy import (  # noqa: F401 (re-exported for the tests)
    WORDS,
    build_bridge,
    build_hf_gpt2,
    build_hf_llama,
    build_hooked,
    build_tokenizer,
    randomize_,
)


def hooked_from_hf(hf_model: Any) -> Any:
    """The same weights as a HookedTransformer, through tlscopes' own conversion."""
    from tlscopes.models.loading import _hooked_from_hf

    dtype = next(hf_model.parameters()).dtype
    hf_model.config.architectures = [type(hf_model).__name__]
    with tempfile.TemporaryDirectory() as directory:
        name = "tiny-" + hf_model.config.model_type
        model = _hooked_from_hf(directory, hf_model, build_tokenizer(), dtype, name)
    return model.eval()


def _unchanged(tensor: torch.Tensor, *, hook: Any) -> torch.Tensor:
    return tensor


def explicit_attention(model: Any) -> Any:
    """A context with a no-op hook on every hook_pattern, so tlscopes' fused attention steps
    aside and every module runs its own (explicit) attention."""
    return model.hooks(fwd_hooks=[(lambda name: name.endswith("hook_pattern"), _unchanged)])


def fused_and_explicit_logits(model: Any, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's logits for `text` with fused attention and with its own attention."""
    from tlscopes.models.fused_attention import fused_attention

    tokens = model.to_tokens(text)
    with torch.no_grad():
        explicit = model(tokens)
        with fused_attention(model):
            fused = model(tokens)
    return fused, explicit


# Tiny configurations of the Hugging Face families the architecture matrix covers. Each bites
# where its family differs: sliding windows of 3 on 8-token inputs, soft-caps near the size of
# the tiny model's scores and logits, a query scale that is not the head size.
_COMMON = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=32,
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=2,
    tie_word_embeddings=False,
)
_GEMMA = dict(
    _COMMON,
    head_dim=8,
    query_pre_attn_scalar=12,
    sliding_window=3,
    layer_types=["sliding_attention", "full_attention"],
)
HF_FAMILIES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "gpt2": (
        "GPT2Config",
        "GPT2LMHeadModel",
        dict(n_embd=32, n_layer=2, n_head=4, n_positions=32, bos_token_id=0, eos_token_id=1),
    ),
    "neox": (
        "GPTNeoXConfig",
        "GPTNeoXForCausalLM",
        dict(
            _COMMON,
            num_key_value_heads=None,
            rotary_pct=0.5,
            use_parallel_residual=True,
            hidden_act="gelu",
        ),
    ),
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(_COMMON)),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(_COMMON, sliding_window=3)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(_COMMON)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(_COMMON, head_dim=8)),
    "gemma2": (
        "Gemma2Config",
        "Gemma2ForCausalLM",
        dict(_GEMMA, final_logit_softcapping=1.5, attn_logit_softcapping=0.8),
    ),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", dict(_GEMMA)),
}
# Families whose norms scale by (1 + w): their weights are randomised around 0, not 1.
ONE_PLUS_WEIGHT_NORMS = ("gemma2", "gemma3")


def build_hf_family(
    family: str, *, dtype: torch.dtype = torch.float64, seed: int = 0, **overrides: Any
) -> Any:
    """A tiny Hugging Face causal LM of one family in HF_FAMILIES, random weights, seeded.

    `overrides` change its config (the same seed gives the same weights where shapes agree).
    """
    import transformers

    config_name, model_name, defaults = HF_FAMILIES[family]
    config_class, model_class = (
        getattr(transformers, config_name),
        getattr(transformers, model_name),
    )
    overrides = {
        key: value for key, value in {**defaults, **overrides}.items() if value is not None
    }
    config = config_class(vocab_size=len(build_tokenizer()), **overrides)
    torch.manual_seed(seed)
    model = randomize_(model_class(config).to(dtype), seed).eval()
    if family in ONE_PLUS_WEIGHT_NORMS:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.ndim == 1 and "norm" in name and name.endswith("weight"):
                    param.sub_(1.0)
    return model


def save_hf_family(family: str, directory: str, **kwargs: Any) -> Any:
    """Builds a family's tiny model and saves it with the word-level tokenizer into `directory`.

    Gemma's tokenizer pads on the left, so the Gemma families' copy does too.
    """
    model = build_hf_family(family, **kwargs)
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(directory)
    # Gemma's tokenizer pads on the left; given at load, so that save_pretrained records it.
    padding = {"padding_side": "left"} if family in ONE_PLUS_WEIGHT_NORMS else {}
    tokenizer = build_tokenizer(**padding)
    tokenizer.save_pretrained(directory)
    return model


def kernel_calls(monkeypatch: Any) -> list[int]:
    """A list that grows by one per scaled_dot_product_attention call (the fused path's; the
    explicit paths and Hugging Face's eager attention never call it), for this test only."""
    calls: list[int] = []
    kernel = torch.nn.functional.scaled_dot_product_attention

    def counted(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(1)
        return kernel(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counted)
    return calls


def subclasses_in(package: Any, base: type) -> set[type]:
    """`base` and every subclass of it, after importing every module of `package`."""
    import importlib
    import pkgutil

    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
    found, frontier = {base}, [base]
    while frontier:
        for subclass in frontier.pop().__subclasses__():
            if subclass not in found:
                found.add(subclass)
                frontier.append(subclass)
    return found


def build_digit_bridge() -> Any:
    """A tiny bridge whose tokenizer has one token per digit and a comma (like SmolLM2's)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<bos>", "<eos>", "<pad>", "<unk>", ",", *"0123456789"])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.Punctuation()]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    directory = tempfile.mkdtemp(prefix="tlscopes-digits-")
    fast.save_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    hf_model = build_hf_llama(vocab_size=len(vocab), max_position_embeddings=64)
    return TransformerBridge.boot_transformers(
        "tiny-llama", hf_model=hf_model, tokenizer=tokenizer, dtype=torch.float64
    ).eval()
