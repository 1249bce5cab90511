"""The GenerationAttribution file format: strict JSON, checked field by field on load.

``{"format": "tlscopes-generation-attribution", "format_version": 1, ...}`` with one entry per
GenerationAttribution field. Tensors, non-finite floats, ``details`` and ``info`` are written as
in the Attribution file format (:mod:`tlscopes.results.attribution_file`), which also reads them back.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from torch import Tensor

from tlscopes.results import attribution_file

FORMAT = "tlscopes-generation-attribution"
FORMAT_VERSION = 1
# Each tensor field: floating or integer, and its dimensions (names for error messages).
TENSORS = {
    "scores": (True, ("batch", "step", "pos")),
    "token_ids": (False, ("batch", "pos")),
    "prompt_lengths": (False, ("batch",)),
    "generated_ids": (False, ("batch", "step")),
    "generated_lengths": (False, ("batch",)),
    "probs": (True, ("batch", "step")),
    "entropy": (True, ("batch", "step")),
    "beta_eff": (True, ("batch", "step")),
    "top_token_ids": (False, ("batch", "step", "k")),
    "top_probs": (True, ("batch", "step", "k")),
}
STRINGS = ("tokens", "generated_tokens", "prompt_text", "generated_text", "top_tokens", "method")
OPTIONAL = ("details", "model_name", "info")


def save(result: Any, path: str | Path, *, overwrite: bool = False) -> None:
    """Writes a GenerationAttribution; refuses an existing file unless `overwrite`."""
    values = {item.name: getattr(result, item.name) for item in fields(result)}
    payload = json.loads(attribution_file.encode(values))
    payload.update(format=FORMAT, format_version=FORMAT_VERSION)
    attribution_file.write(path, json.dumps(payload, allow_nan=False), overwrite=overwrite)


def read(path: str | Path) -> dict[str, Any]:
    """The GenerationAttribution fields stored in `path`, each checked (ValueError names the
    file and the field)."""
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a tlscopes GenerationAttribution file ({error})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a tlscopes GenerationAttribution file (no format {FORMAT!r})"
        )
    payload = dict(payload)
    payload.pop("format")
    version = payload.pop("format_version", None)
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise ValueError(
            f"{path}: GenerationAttribution format_version {version!r}, expected {FORMAT_VERSION}"
        )
    required = (*TENSORS, *STRINGS)
    missing = [name for name in required if name not in payload]
    unknown = sorted(set(payload) - set(required) - set(OPTIONAL))
    if missing or unknown:
        raise ValueError(f"{path}: missing fields {missing}, unknown fields {unknown}")
    reader = attribution_file.Reader(path)
    values: dict[str, Any] = {name: _tensor(reader, name, payload[name]) for name in TENSORS}
    _check_shapes(reader, values)
    _check_lengths(reader, values)
    values.update(_strings(reader, payload, values))
    for name in ("details", "info"):
        if name in payload:
            if not isinstance(payload[name], dict):
                raise reader.fail(name, f"must be an object, found {type(payload[name]).__name__}")
            values[name] = reader.detail(payload[name], "")
    if "model_name" in payload:
        if not isinstance(payload["model_name"], str):
            raise reader.fail("model_name", f"must be a string, found {payload['model_name']!r}")
        values["model_name"] = payload["model_name"]
    return values


def _tensor(reader: attribution_file.Reader, name: str, entry: Any) -> Tensor:
    import torch

    floating, dims = TENSORS[name]
    allowed = attribution_file.FLOAT_DTYPES if floating else attribution_file.INTEGER_DTYPES
    if not isinstance(entry, dict) or set(entry) != {"tensor", "dtype"}:
        raise reader.fail(name, 'must be an object {"tensor": [...], "dtype": "..."}')
    declared = entry["dtype"]
    dtype = allowed.get(declared.removeprefix("torch.")) if isinstance(declared, str) else None
    if dtype is None:
        kind = "floating-point" if floating else "integer"
        raise reader.fail(name, f"must be a {kind} tensor, but the file declares {declared!r}")
    shape, flat = reader.nested(name, entry["tensor"], len(dims))
    check = reader.float_value if floating else reader.integer_value
    return torch.tensor([check(name, value, dtype) for value in flat], dtype=dtype).reshape(shape)


def _check_shapes(reader: attribution_file.Reader, values: dict[str, Any]) -> None:
    batch, steps, width = values["scores"].shape
    sizes = {"batch": batch, "step": steps, "pos": width, "k": values["top_token_ids"].shape[2]}
    for name, (_, dims) in TENSORS.items():
        expected = [sizes[dim] for dim in dims]
        if list(values[name].shape) != expected:
            raise reader.fail(
                name,
                f"has shape {list(values[name].shape)}, expected [{', '.join(dims)}] = {expected}",
            )


def _check_lengths(reader: attribution_file.Reader, values: dict[str, Any]) -> None:
    _, steps, width = values["scores"].shape
    prompt, generated = values["prompt_lengths"], values["generated_lengths"]
    if bool((prompt < 1).any()):
        raise reader.fail("prompt_lengths", f"holds {prompt.tolist()}; every prompt has a token")
    if bool(((generated < 1) | (generated > steps)).any()):
        raise reader.fail("generated_lengths", f"holds {generated.tolist()}; expected 1 to {steps}")
    if len(generated) and int(generated.max()) != steps:
        raise reader.fail("generated_lengths", f"longest is {int(generated.max())}, steps {steps}")
    if bool((prompt + generated > width).any()):
        raise reader.fail(
            "prompt_lengths", f"plus generated_lengths exceed the text's {width} positions"
        )


def _strings(
    reader: attribution_file.Reader, payload: dict[str, Any], values: dict[str, Any]
) -> dict[str, Any]:
    batch = values["scores"].shape[0]
    k = values["top_token_ids"].shape[2]
    generated = values["generated_lengths"].tolist()
    text_lengths = (values["prompt_lengths"] + values["generated_lengths"]).tolist()
    tokens = reader.string_rows("tokens", payload["tokens"])
    generated_tokens = reader.string_rows("generated_tokens", payload["generated_tokens"])
    for name, rows, lengths in (
        ("tokens", tokens, text_lengths),
        ("generated_tokens", generated_tokens, generated),
    ):
        if [len(row) for row in rows] != lengths:
            raise reader.fail(name, f"has rows of {[len(row) for row in rows]}; expected {lengths}")
    texts = {
        name: reader.string_list(name, payload[name], batch)
        for name in ("prompt_text", "generated_text")
    }
    top = payload["top_tokens"]
    if not isinstance(top, list) or len(top) != batch:
        raise reader.fail("top_tokens", f"must be a list of {batch} prompts")
    for index, prompt in enumerate(top):
        rows = reader.string_rows("top_tokens", prompt)
        if [len(row) for row in rows] != [k] * generated[index]:
            raise reader.fail(
                "top_tokens", f"prompt {index} must have {generated[index]} steps of {k} tokens"
            )
    if not isinstance(payload["method"], str):
        raise reader.fail("method", f"must be a string, found {payload['method']!r}")
    return {
        "tokens": tokens,
        "generated_tokens": generated_tokens,
        **texts,
        "top_tokens": top,
        "method": payload["method"],
    }
