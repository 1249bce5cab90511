"""The Attribution file format: strict JSON, written whole and checked field by field on load.

A file is one JSON object: ``"format_version": 2`` and one entry per Attribution field. A tensor
is ``{"tensor": nested lists, "dtype": "torch.float32"}``. JSON has no NaN or infinity, so a
non-finite float is written as a string in a tensor (``"NaN"``, ``"Infinity"``, ``"-Infinity"``)
and as ``{"$float": "NaN"}`` (likewise) in ``details``; both read back exactly. Version 1 files
(bare ``NaN`` / ``Infinity`` tokens, which Python's json module reads) load too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
# Bounds on a file read from elsewhere, checked before its arrays are read; a caller who trusts a
# larger file raises them through ``load(path, max_bytes=..., max_positions=...)``.
DEFAULT_MAX_BYTES = 2**30
DEFAULT_MAX_POSITIONS = 2**17

FLOAT_DTYPES = {
    name: getattr(torch, name) for name in ("float16", "bfloat16", "float32", "float64")
}
INTEGER_DTYPES = {
    name: getattr(torch, name) for name in ("uint8", "int8", "int16", "int32", "int64")
}
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
FLOAT_TAG = "$float"


@dataclass(frozen=True)
class TensorField:
    """What a tensor field must hold: its kind (floating or integer) and number of dimensions."""

    floating: bool
    dims: tuple[str, ...]


TENSOR_FIELDS = {
    "scores": TensorField(True, ("batch", "pos")),
    "token_ids": TensorField(False, ("batch", "pos")),
    "positions": TensorField(False, ("batch",)),
    "top_token_ids": TensorField(False, ("batch", "k")),
    "top_probs": TensorField(True, ("batch", "k")),
    "target_ids": TensorField(False, ("batch",)),
    "target_probs": TensorField(True, ("batch",)),
}
# Tensors that LayerAttribution files (tlscopes.results.layer_file) keep beside an Attribution.
LAYER_TENSOR_FIELDS = {
    "layer_scores": TensorField(True, ("batch", "layer", "pos")),
    "head_scores": TensorField(True, ("batch", "layer", "head", "pos")),
}
REQUIRED_FIELDS = (
    "scores",
    "tokens",
    "token_ids",
    "positions",
    "method",
    "top_token_ids",
    "top_tokens",
    "top_probs",
)
OPTIONAL_FIELDS = (
    "target_ids",
    "target_probs",
    "target_tokens",
    "details",
    "model_name",
    "info",
)
FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS


# Writing ----------------------------------------------------------------------------------------


def _finite_or_name(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def encode_tensor(tensor: Tensor) -> dict[str, Any]:
    values: Any = tensor.detach().cpu().tolist()
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        flat = [_finite_or_name(v) for v in tensor.detach().cpu().double().flatten().tolist()]
        values = _unflatten(flat, list(tensor.shape))
    return {"tensor": values, "dtype": str(tensor.dtype)}


def _unflatten(flat: list[Any], shape: list[int]) -> Any:
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat
    step = math.prod(shape[1:])
    return [_unflatten(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def _encode_detail(value: Any, where: str) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else {FLOAT_TAG: _finite_or_name(value)}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_encode_detail(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        if set(value) == {FLOAT_TAG}:
            raise ValueError(
                f"details{where} is a dict whose only key is {FLOAT_TAG!r}, which the file format "
                "reserves for non-finite floats; rename the key"
            )
        if not all(isinstance(key, str) for key in value):
            raise TypeError(f"details{where} has a key that is not a string; JSON keys are strings")
        return {key: _encode_detail(item, f"{where}[{key!r}]") for key, item in value.items()}
    raise TypeError(
        f"details{where} is a {type(value).__name__}, which JSON cannot hold; store numbers, "
        "strings, lists or dicts (a tensor as .tolist())"
    )


def encode(values: dict[str, Any]) -> str:
    """The file's text for an Attribution's fields (strict JSON: no NaN or Infinity tokens)."""
    payload: dict[str, Any] = {"format_version": FORMAT_VERSION}
    for name, value in values.items():
        if isinstance(value, Tensor):
            payload[name] = encode_tensor(value)
        elif name in ("details", "info"):
            payload[name] = _encode_detail(value, "")
        else:
            payload[name] = value
    return json.dumps(payload, allow_nan=False)


def write(path: str | Path, text: str, *, overwrite: bool) -> None:
    """Writes `text`, refusing an existing file unless `overwrite`."""
    try:
        with open(path, "w" if overwrite else "x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True to replace it, or choose another path"
        ) from None


# Reading ----------------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def check_version(version: Any, readable: tuple[int, ...], path: str | Path, kind: str) -> None:
    """Refuses a ``format_version`` outside `readable` (a bool too, though ``True == 1``)."""
    if isinstance(version, bool) or not isinstance(version, int) or version not in readable:
        raise ValueError(
            f"{path} is not a tlscopes {kind} file this version reads: format_version "
            f"{version!r}, expected one of {list(readable)}"
        )


def read_header(
    path: str | Path,
    kind: str,
    readable: tuple[int, ...],
    *,
    format_name: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[str, Any]:
    """The JSON object in `path` less its common header fields, which are checked here for
    every result file: its size against `max_bytes` (before reading it), ``"format"`` (when
    the kind has one) and ``"format_version"``.

    Args:
        path: the file.
        kind: the result class the file holds, for messages (``"LayerAttribution"``).
        readable: the format versions this reader understands.
        format_name: the value the file's ``"format"`` field must have; None for a kind whose
            files have no such field (Attribution).
        max_bytes: the largest file read; a larger one is refused unread.
    """
    size = Path(path).stat().st_size
    if size > max_bytes:
        raise ValueError(
            f"{path} is {size:,} bytes, over the {max_bytes:,}-byte limit for reading a {kind} "
            f"file; if you trust it, pass max_bytes={size} (or more) to load"
        )
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a tlscopes {kind} file (not JSON: {error})") from None
    if not isinstance(payload, dict):
        raise ValueError(
            f"{path} is not a tlscopes {kind} file: expected a JSON object with the {kind} "
            f"fields, found a {type(payload).__name__}"
        )
    payload = dict(payload)
    if format_name is not None:
        if payload.pop("format", None) != format_name:
            raise ValueError(f"{path} is not a tlscopes {kind} file (no format {format_name!r})")
        check_version(payload.pop("format_version", None), readable, path, kind)
    return payload


class Reader:
    """Checks one file's payload; every error names the file and the field.

    Args:
        path: the file, named in errors.
        max_positions: the longest token axis (``pos``) accepted, checked from the nesting of a
            tensor's lists before its values are read.
    """

    def __init__(self, path: str | Path, max_positions: int = DEFAULT_MAX_POSITIONS) -> None:
        self.path = path
        self.max_positions = max_positions

    def fail(self, field: str, message: str) -> ValueError:
        return ValueError(f"{self.path}: field {field!r} {message}")

    def layout(
        self, name: str, entry: Any, spec: TensorField | None = None
    ) -> tuple[torch.dtype, list[int], list[Any]]:
        """A tensor field's dtype, shape and flattened values, its form checked (not its values);
        the ``pos`` axis is held to `max_positions`."""
        if spec is None:
            spec = TENSOR_FIELDS[name] if name in TENSOR_FIELDS else LAYER_TENSOR_FIELDS[name]
        kind = "floating-point" if spec.floating else "integer"
        allowed = FLOAT_DTYPES if spec.floating else INTEGER_DTYPES
        if not isinstance(entry, dict) or set(entry) != {"tensor", "dtype"}:
            raise self.fail(name, 'must be an object {"tensor": [...], "dtype": "..."}')
        declared = entry["dtype"]
        dtype = allowed.get(declared.removeprefix("torch.")) if isinstance(declared, str) else None
        if dtype is None:
            raise self.fail(
                name,
                f"must be a {kind} tensor (dtype one of {', '.join(allowed)}), but the file "
                f"declares dtype {declared!r}",
            )
        shape, flat = self.nested(name, entry["tensor"], len(spec.dims))
        if "pos" in spec.dims and shape[spec.dims.index("pos")] > self.max_positions:
            positions = shape[spec.dims.index("pos")]
            raise self.fail(
                name,
                f"has {positions:,} positions, over the limit of {self.max_positions:,}; if you "
                f"trust the file, pass max_positions={positions} (or more) to load",
            )
        return dtype, shape, flat

    def shape(self, name: str, entry: Any, spec: TensorField | None = None) -> list[int]:
        """A tensor field's shape, read from its nesting before its values are checked."""
        return self.layout(name, entry, spec)[1]

    def tensor(self, name: str, entry: Any, spec: TensorField | None = None) -> Tensor:
        if spec is None:
            spec = TENSOR_FIELDS[name] if name in TENSOR_FIELDS else LAYER_TENSOR_FIELDS[name]
        dtype, shape, flat = self.layout(name, entry, spec)
        check = self.float_value if spec.floating else self.integer_value
        flat = [check(name, value, dtype) for value in flat]
        return torch.tensor(flat, dtype=dtype).reshape(shape)

    def nested(self, name: str, data: Any, ndim: int) -> tuple[list[int], list[Any]]:
        """The shape and the flattened values of `ndim`-deep rectangular nested lists."""
        shape: list[int] = []
        level = [data]
        for _ in range(ndim):
            if not all(isinstance(item, list) for item in level):
                raise self.fail(name, f"must be a {ndim}-dimensional array (nested lists)")
            lengths = {len(item) for item in level}
            if len(lengths) > 1:
                raise self.fail(name, f"has rows of different lengths {sorted(lengths)}")
            shape.append(lengths.pop() if lengths else 0)
            level = [value for item in level for value in item]
        if any(isinstance(item, (list, dict)) for item in level):
            raise self.fail(name, f"must be a {ndim}-dimensional array, but it is deeper")
        return shape, level

    def float_value(self, name: str, value: Any, dtype: torch.dtype) -> float:
        if isinstance(value, str) and value in NON_FINITE:
            return NON_FINITE[value]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(
                name, f'must hold numbers (or "NaN", "Infinity", "-Infinity"), found {value!r}'
            )
        return float(value)

    def integer_value(self, name: str, value: Any, dtype: torch.dtype) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"must hold integers, found {value!r}")
        info = torch.iinfo(dtype)
        if not max(info.min, 0) <= value <= info.max:
            raise self.fail(name, f"holds {value}, outside [{max(info.min, 0)}, {info.max}]")
        return value

    def string_list(self, name: str, value: Any, length: int) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail(name, f"must be a list of strings, found {_describe(value)}")
        if len(value) != length:
            raise self.fail(name, f"has {len(value)} entries, expected {length}")
        return value

    def string_rows(self, name: str, value: Any) -> list[list[str]]:
        if not isinstance(value, list):
            raise self.fail(name, f"must be a list of lists of strings, found {_describe(value)}")
        for index, row in enumerate(value):
            if not isinstance(row, list) or not all(isinstance(item, str) for item in row):
                raise self.fail(
                    name, f"must be a list of lists of strings; entry {index} is {_describe(row)}"
                )
        return value

    def detail(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            return [self.detail(item, f"{where}[{i}]") for i, item in enumerate(value)]
        if isinstance(value, dict):
            if set(value) == {FLOAT_TAG}:
                if value[FLOAT_TAG] not in NON_FINITE:
                    raise self.fail(
                        f"details{where}", f"{FLOAT_TAG} must be one of {list(NON_FINITE)}"
                    )
                return NON_FINITE[value[FLOAT_TAG]]
            return {key: self.detail(item, f"{where}[{key!r}]") for key, item in value.items()}
        return value


def read(
    path: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_positions: int = DEFAULT_MAX_POSITIONS,
) -> dict[str, Any]:
    """The Attribution fields stored in `path`, each checked (ValueError names the problem);
    a file over `max_bytes` or `max_positions` is refused before its arrays are read."""
    payload = read_header(path, "Attribution", READABLE_VERSIONS, max_bytes=max_bytes)
    return decode(payload, path, max_positions=max_positions)


def decode(
    payload: Any, path: str | Path, *, max_positions: int = DEFAULT_MAX_POSITIONS
) -> dict[str, Any]:
    """The Attribution fields in a decoded JSON payload, each checked; `path` names the source
    in errors. Every tensor's shape is checked against the others before any values are read."""
    if not isinstance(payload, dict):
        raise ValueError(
            f"{path} is not a tlscopes Attribution file: expected a JSON object with the "
            f"Attribution fields, found a {type(payload).__name__}"
        )
    payload = dict(payload)
    check_version(payload.pop("format_version", None), READABLE_VERSIONS, path, "Attribution")
    reader = Reader(path, max_positions)
    missing = [name for name in REQUIRED_FIELDS if name not in payload]
    unknown = sorted(set(payload) - set(FIELDS))
    if missing or unknown:
        raise ValueError(
            f"{path}: missing fields {missing}, unknown fields {unknown}; an Attribution file "
            f"has {list(REQUIRED_FIELDS)} and optionally {list(OPTIONAL_FIELDS)}"
        )
    present = [name for name in TENSOR_FIELDS if payload.get(name) is not None]
    shapes = {name: reader.shape(name, payload[name]) for name in present}
    batch, width = shapes["scores"]
    for name in present:
        spec = TENSOR_FIELDS[name]
        expected = {"batch": batch, "pos": width, "k": shapes["top_token_ids"][1]}
        shape = [expected[dim] for dim in spec.dims]
        if shapes[name] != shape:
            raise reader.fail(
                name,
                f"has shape {shapes[name]}, expected [{', '.join(spec.dims)}] = "
                f"{shape} (scores are [batch, pos] = {[batch, width]})",
            )
    values: dict[str, Any] = {"tokens": reader.string_rows("tokens", payload["tokens"])}
    lengths = [len(row) for row in values["tokens"]]
    if len(lengths) != batch or any(length > width for length in lengths):
        raise reader.fail(
            "tokens", f"has rows of {lengths} tokens; expected {batch} rows of at most {width}"
        )
    if batch and max(lengths) != width:
        raise reader.fail("tokens", f"longest row has {max(lengths)} tokens, scores have {width}")
    values.update({name: reader.tensor(name, payload[name]) for name in present})
    for index, (position, length) in enumerate(
        zip(values["positions"].tolist(), lengths, strict=True)
    ):
        if not 0 <= position < length:
            raise reader.fail(
                "positions",
                f"entry {index} is {position}, outside prompt {index}'s 0..{length - 1}",
            )
    k = values["top_token_ids"].shape[1]
    values["top_tokens"] = reader.string_rows("top_tokens", payload["top_tokens"])
    if [len(row) for row in values["top_tokens"]] != [k] * batch:
        raise reader.fail(
            "top_tokens",
            f"has rows of {[len(row) for row in values['top_tokens']]} tokens; expected {batch} "
            f"rows of {k} (top_token_ids is {[batch, k]})",
        )
    targets = ("target_ids", "target_probs", "target_tokens")
    present = {name: payload.get(name) is not None for name in targets}
    if any(present.values()) and not all(present.values()):
        raise reader.fail(
            "target_ids",
            f"target_ids, target_probs and target_tokens are all present or all absent; "
            f"found {[name for name, there in present.items() if there]} only",
        )
    if all(present.values()):
        values["target_tokens"] = reader.string_list(
            "target_tokens", payload["target_tokens"], batch
        )
    for name in ("method", "model_name"):
        if name in payload and not isinstance(payload[name], str):
            raise reader.fail(name, f"must be a string, found {payload[name]!r}")
        if name in payload:
            values[name] = payload[name]
    for name in ("details", "info"):
        if name in payload:
            if not isinstance(payload[name], dict):
                raise reader.fail(name, f"must be an object, found {_describe(payload[name])}")
            values[name] = reader.detail(payload[name], "")
    return values
