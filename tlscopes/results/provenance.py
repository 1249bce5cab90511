"""Where a result came from: the method, its parameters, the model and the library versions.

Every :class:`~tlscopes.results.attribution.Attribution` carries this record in ``.info`` (and in
``to_pandas().attrs``), so a saved result can be traced to what produced it.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Mapping
from typing import Any

import torch

from tlscopes.protocols import TransformerLensModel
from tlscopes.tokens import bos_token_id


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe_value(value: Any) -> Any:
    """A JSON-friendly description of a parameter: tensors by shape, dtype and norm."""
    if isinstance(value, torch.Tensor):
        return {
            "shape": list(value.shape),
            "dtype": str(value.dtype).removeprefix("torch."),
            "norm": float(value.detach().double().norm()) if value.numel() else 0.0,
        }
    if isinstance(value, (tuple, list)):
        return [describe_value(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def scope_parameters(scope: Any) -> dict[str, Any]:
    """A scope's (frozen dataclass) fields as a JSON-friendly dict."""
    if not dataclasses.is_dataclass(scope):
        return {}
    return {f.name: describe_value(getattr(scope, f.name)) for f in dataclasses.fields(scope)}


def model_kind(model: TransformerLensModel) -> str:
    """The TransformerLens model class: ``HookedTransformer`` or ``TransformerBridge``."""
    return type(model).__name__


def provenance(
    model: TransformerLensModel,
    method: str,
    *,
    scope: Any = None,
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record kept in ``Attribution.info``.

    Example:
        >>> provenance(model, "fisher", scope=FisherScope(rank=2))["scope"]  # doctest: +SKIP
        {'name': 'FisherScope', 'rank': 2}
    """
    W_U = model.W_U
    record: dict[str, Any] = {"method": method}
    if scope is not None:
        record["scope"] = {"name": type(scope).__name__, **scope_parameters(scope)}
    if parameters:
        record["parameters"] = {key: describe_value(value) for key, value in parameters.items()}
    record.update(
        {
            "model_name": str(getattr(model.cfg, "model_name", "")),
            "model_kind": model_kind(model),
            # What views mask by default (an attention sink); see tlscopes.tokens.
            "bos_token_id": bos_token_id(model),
            "dtype": str(W_U.dtype).removeprefix("torch."),
            "device": str(W_U.device),
            "versions": {
                "tlscopes": _version("tlscopes"),
                "transformer_lens": _version("transformer-lens"),
                "torch": torch.__version__,
            },
        }
    )
    return record
