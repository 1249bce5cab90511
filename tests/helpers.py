"""Tiny, seeded models for fast exact tests: HookedTransformer, TransformerBridge, tokenizer.

Norm weights and biases are randomised (the defaults 1 and 0 would hide a missing weight or
bias), and float64 is the default where exactness is checked.
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


def build_tokenizer() -> Any:
    """A word-level tokenizer (offline) with bos, eos and pad, loaded from a saved directory.

    TransformerLens re-loads tokenizers by their directory, so it is saved once per process.
    """
    global _TOKENIZER_DIR
    from transformers import AutoTokenizer

    if _TOKENIZER_DIR is None:
        directory = tempfile.mkdtemp(prefix="tlscopes-tokenizer-")
        _word_level_tokenizer().save_pretrained(directory)
        _TOKENIZER_DIR = directory
    return AutoTokenizer.from_pretrained(_TOKENIZER_DIR)


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


def build_hf_llama(*, dtype: torch.dtype = torch.float64, seed: int = 0, **overrides: Any) -> Any:
    """A tiny Hugging Face Llama (RMSNorm, rotary) with random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    config = dict(
        vocab_size=len(tokenizer),
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
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**config)).to(dtype)
    return randomize_(model, seed).eval()


def build_hf_gpt2(*, dtype: torch.dtype = torch.float64, seed: int = 0) -> Any:
    """A tiny Hugging Face GPT-2 (LayerNorm with bias, absolute positions) with random weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = build_tokenizer()
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=16,
        n_layer=2,
        n_head=2,
        n_positions=32,
        bos_token_id=0,
        eos_token_id=1,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).to(dtype)
    return randomize_(model, seed).eval()


def build_bridge(hf_model: Any | None = None, **overrides: Any) -> Any:
    """A TransformerBridge around a tiny Hugging Face model (Llama by default)."""
    from transformer_lens.model_bridge import TransformerBridge

    hf_model = build_hf_llama(**overrides) if hf_model is None else hf_model
    dtype = next(hf_model.parameters()).dtype
    name = "tiny-" + hf_model.config.model_type
    return TransformerBridge.boot_transformers(
        name, hf_model=hf_model, tokenizer=build_tokenizer(), dtype=dtype
    ).eval()


def hooked_from_hf(hf_model: Any) -> Any:
    """The same weights as a HookedTransformer, through tlscopes' own conversion."""
    from tlscopes.models import _hooked_from_hf

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
    from tlscopes.fused_attention import fused_attention

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
    tokenizer = build_tokenizer()
    if family in ONE_PLUS_WEIGHT_NORMS:
        from transformers import AutoTokenizer

        # Given at load, so that save_pretrained records it.
        tokenizer = AutoTokenizer.from_pretrained(_TOKENIZER_DIR, padding_side="left")
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
