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
SPECS = {name: attribution_file.TensorField(*spec) for name, spec in TENSORS.items()}
STRINGS = ("tokens", "generated_tokens", "prompt_text", "generated_text", "top_tokens", "method")
OPTIONAL = ("details", "model_name", "info")


def save(result: Any, path: str | Path, *, overwrite: bool = False) -> None:
    """Writes a GenerationAttribution; refuses an existing file unless `overwrite`."""
    values = {item.name: getattr(result, item.name) for item in fields(result)}
    payload = json.loads(attribution_file.encode(values))
    payload.update(format=FORMAT, format_version=FORMAT_VERSION)
    attribution_file.write(path, json.dumps(payload, allow_nan=False), overwrite=overwrite)


def read(
    path: str | Path,
    *,
    max_bytes: int = attribution_file.DEFAULT_MAX_BYTES,
    max_positions: int = attribution_file.DEFAULT_MAX_POSITIONS,
) -> dict[str, Any]:
    """The GenerationAttribution fields stored in `path`, each checked (ValueError names the
    file and the field); a file over `max_bytes` or `max_positions` is refused before its
    arrays are read."""
    payload = attribution_file.read_header(
        path, "GenerationAttribution", (FORMAT_VERSION,), format_name=FORMAT, max_bytes=max_bytes
    )
    required = (*TENSORS, *STRINGS)
    missing = [name for name in required if name not in payload]
    unknown = sorted(set(payload) - set(required) - set(OPTIONAL))
    if missing or unknown:
        raise ValueError(f"{path}: missing fields {missing}, unknown fields {unknown}")
    reader = attribution_file.Reader(path, max_positions)
    _check_shapes(
        reader, {name: reader.shape(name, payload[name], SPECS[name]) for name in TENSORS}
    )
    values: dict[str, Any] = {
        name: reader.tensor(name, payload[name], SPECS[name]) for name in TENSORS
    }
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


def _check_shapes(reader: attribution_file.Reader, shapes: dict[str, list[int]]) -> None:
    batch, steps, width = shapes["scores"]
    sizes = {"batch": batch, "step": steps, "pos": width, "k": shapes["top_token_ids"][2]}
    for name, (_, dims) in TENSORS.items():
        expected = [sizes[dim] for dim in dims]
        if shapes[name] != expected:
            raise reader.fail(
                name, f"has shape {shapes[name]}, expected [{', '.join(dims)}] = {expected}"
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
