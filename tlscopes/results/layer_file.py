"""The LayerAttribution file format: strict JSON holding the layer (and head) scores beside the
input-level Attribution, in the Attribution file format (:mod:`tlscopes.results.attribution_file`).

``{"format": "tlscopes-layer-attribution", "format_version": 1, "layer_scores": tensor,
"head_scores": tensor | null, "inputs": {Attribution fields}}``; every field is checked on load.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from tlscopes.results import attribution_file
from tlscopes.results.attribution import Attribution

FORMAT = "tlscopes-layer-attribution"
FORMAT_VERSION = 1


def save(result: Any, path: str | Path, *, overwrite: bool = False) -> None:
    """Writes a LayerAttribution; refuses an existing file unless `overwrite`."""
    inputs = json.loads(
        attribution_file.encode(
            {f.name: getattr(result.inputs, f.name) for f in fields(Attribution)}
        )
    )
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "layer_scores": attribution_file.encode_tensor(result.scores),
        "head_scores": None
        if result.head_scores is None
        else attribution_file.encode_tensor(result.head_scores),
        "inputs": inputs,
    }
    attribution_file.write(path, json.dumps(payload, allow_nan=False), overwrite=overwrite)


def load(
    path: str | Path,
    result_class: Any,
    *,
    max_bytes: int = attribution_file.DEFAULT_MAX_BYTES,
    max_positions: int = attribution_file.DEFAULT_MAX_POSITIONS,
) -> Any:
    """Reads a LayerAttribution file, checking every field (ValueError names file and field);
    `result_class` is the LayerAttribution class (passed in, so this module needs no import of
    the one that uses it). A file over `max_bytes` or `max_positions` is refused before its
    arrays are read."""
    payload = attribution_file.read_header(
        path, "LayerAttribution", (FORMAT_VERSION,), format_name=FORMAT, max_bytes=max_bytes
    )
    reader = attribution_file.Reader(path, max_positions)
    unknown = sorted(set(payload) - {"layer_scores", "head_scores", "inputs"})
    if unknown or "layer_scores" not in payload or "inputs" not in payload:
        raise ValueError(
            f"{path}: a LayerAttribution file has layer_scores, inputs and head_scores "
            f"(or null); found {sorted(payload)}"
        )
    layer_shape = reader.shape("layer_scores", payload["layer_scores"])
    inputs = Attribution(
        **attribution_file.decode(
            payload["inputs"], f"{path} (inputs)", max_positions=max_positions
        )
    )
    batch, pos = inputs.scores.shape
    if layer_shape[0] != batch or layer_shape[2] != pos:
        raise reader.fail(
            "layer_scores", f"has shape {layer_shape}; expected [{batch}, layers, {pos}]"
        )
    scores = reader.tensor("layer_scores", payload["layer_scores"])
    heads = payload.get("head_scores")
    head_scores = None if heads is None else reader.tensor("head_scores", heads)
    if head_scores is not None and (
        head_scores.shape[:2] != scores.shape[:2] or head_scores.shape[3] != pos
    ):
        raise reader.fail(
            "head_scores",
            f"has shape {list(head_scores.shape)}; expected [{batch}, {scores.shape[1]}, heads, "
            f"{pos}]",
        )
    return result_class(scores, inputs, head_scores)
