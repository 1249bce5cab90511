"""The SAE: a sparse autoencoder's encoder, as tlscopes reads it at one TransformerLens hook point.

A feature f's encoder pre-activation at an activation h [d_in] is

    pre_f(h) = (N(h) - b_dec * apply_b_dec_to_input) . W_enc[:, f] + b_enc[f]

with N the SAE's input normalisation (the identity for most SAEs), and its activation after the
nonlinearity is ReLU(pre_f); JumpReLU(pre_f) = pre_f * [pre_f > threshold_f] (after ReLU, as
Gemma Scope and SAELens compute it); or TopK: ReLU(pre_f) if f is among the k largest
pre-activations at that position, else 0. A feature *fires* where its activation is > 0.

Only the encoder is needed to explain a feature; the decoder is kept where a format ships one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

ACTIVATIONS = ("relu", "jumprelu", "topk")
# Input normalisations handled exactly (their Jacobian is taken at the explained activation).
NORMALISATIONS = ("none", "constant_norm_rescale", "layer_norm")
# SAELens' layer_norm normalisation adds this to the (unbiased) standard deviation.
LAYER_NORM_EPS = 1e-5


def _hash_tensor(digest: Any, name: str, tensor: Tensor | None) -> None:
    digest.update(name.encode())
    if tensor is None:
        digest.update(b"none")
        return
    data = tensor.detach().cpu().contiguous()
    digest.update(f"{str(data.dtype)}{list(data.shape)}".encode())
    digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())


@dataclass(frozen=True)
class SAE:
    """A sparse autoencoder's encoder at one hook point (see the module docstring for the maths).

    Build one with :meth:`from_tensors` or :func:`tlscopes.load_sae`. The tensors are kept as
    given (any dtype and device) and cast to the model's activation when used.

    Attributes:
        W_enc: encoder [d_in, d_sae] (one column per feature).
        b_enc: encoder bias [d_sae].
        hook: the TransformerLens hook point the SAE reads (``blocks.3.hook_resid_post``,
            ``blocks.3.hook_mlp_out``, ``blocks.3.attn.hook_z`` with heads flattened, ...).
        activation: "relu", "jumprelu" or "topk".
        threshold: JumpReLU thresholds [d_sae] (jumprelu only).
        k: how many features TopK keeps per position (topk only).
        W_dec: decoder [d_sae, d_in], or None.
        b_dec: decoder bias [d_in], or None.
        apply_b_dec_to_input: subtract b_dec from the input before encoding.
        normalisation: "none", "constant_norm_rescale" (h * sqrt(d_in) / ||h||) or
            "layer_norm" ((h - mean) / (std + 1e-5), std unbiased), as SAELens defines them.
        source: where the SAE came from (a folder, a SAELens release), kept in results.
        sha256: a hash of everything that sets the pre-activations (computed, not given).
    """

    W_enc: Float[Tensor, "d_in d_sae"] = field(repr=False)
    b_enc: Float[Tensor, " d_sae"] = field(repr=False)
    hook: str
    activation: str = "relu"
    threshold: Float[Tensor, " d_sae"] | None = field(default=None, repr=False)
    k: int | None = None
    W_dec: Float[Tensor, "d_sae d_in"] | None = field(default=None, repr=False)
    b_dec: Float[Tensor, " d_in"] | None = field(default=None, repr=False)
    apply_b_dec_to_input: bool = False
    normalisation: str = "none"
    source: str = "tensors"
    sha256: str = field(default="", init=False)

    def __post_init__(self) -> None:
        for name in ("W_enc", "b_enc"):
            if not isinstance(getattr(self, name), Tensor):
                raise TypeError(f"SAE {name} must be a tensor, got {type(getattr(self, name))}")
        if self.W_enc.ndim != 2:
            raise ValueError(f"SAE W_enc must be [d_in, d_sae], got shape {list(self.W_enc.shape)}")
        d_in, d_sae = self.W_enc.shape
        self._check_shape("b_enc", self.b_enc, [d_sae])
        self._check_shape("threshold", self.threshold, [d_sae])
        self._check_shape("W_dec", self.W_dec, [d_sae, d_in])
        self._check_shape("b_dec", self.b_dec, [d_in])
        if not isinstance(self.hook, str) or not self.hook:
            raise ValueError(f"SAE hook must be a hook point name, got {self.hook!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"SAE activation {self.activation!r} is not supported; choose from {ACTIVATIONS}"
            )
        if self.activation == "jumprelu" and self.threshold is None:
            raise ValueError("a jumprelu SAE needs threshold [d_sae]")
        if self.activation != "jumprelu" and self.threshold is not None:
            raise ValueError(f"threshold is for jumprelu SAEs, not {self.activation}; leave it out")
        if self.activation == "topk":
            if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= d_sae:
                raise ValueError(f"a topk SAE needs k, an integer in [1, {d_sae}], got {self.k!r}")
        elif self.k is not None:
            raise ValueError(f"k is for topk SAEs, not {self.activation}; leave it out")
        if self.apply_b_dec_to_input and self.b_dec is None:
            raise ValueError("apply_b_dec_to_input=True needs b_dec [d_in]")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(
                f"SAE input normalisation {self.normalisation!r} is not supported (tlscopes "
                f"handles {NORMALISATIONS} exactly); fold a constant scale into W_enc instead"
            )
        for name in ("W_enc", "b_enc", "threshold"):
            value = getattr(self, name)
            if value is not None and not bool(torch.isfinite(value).all()):
                raise ValueError(f"SAE {name} has non-finite entries")
        object.__setattr__(self, "sha256", self._content_hash())

    @staticmethod
    def _check_shape(name: str, tensor: Tensor | None, shape: list[int]) -> None:
        if tensor is None:
            return
        if not isinstance(tensor, Tensor):
            raise TypeError(f"SAE {name} must be a tensor or None, got {type(tensor).__name__}")
        if list(tensor.shape) != shape:
            raise ValueError(
                f"SAE {name} has shape {list(tensor.shape)}; with W_enc [d_in, d_sae] = "
                f"{list(shape)} it must be {shape}"
            )

    def _content_hash(self) -> str:
        digest = hashlib.sha256()
        for name in ("W_enc", "b_enc", "threshold"):
            _hash_tensor(digest, name, getattr(self, name))
        _hash_tensor(digest, "b_dec", self.b_dec if self.apply_b_dec_to_input else None)
        digest.update(f"{self.hook}|{self.activation}|{self.k}|{self.normalisation}".encode())
        return digest.hexdigest()

    @classmethod
    def from_tensors(
        cls,
        *,
        W_enc: Tensor,
        b_enc: Tensor,
        hook: str,
        activation: str = "relu",
        threshold: Tensor | None = None,
        k: int | None = None,
        W_dec: Tensor | None = None,
        b_dec: Tensor | None = None,
        apply_b_dec_to_input: bool = False,
        normalisation: str = "none",
        source: str = "tensors",
    ) -> SAE:
        """Any SAE from its tensors (W_enc [d_in, d_sae]; see the class attributes).

        Example:
            >>> sae = SAE.from_tensors(  # doctest: +SKIP
            ...     W_enc=torch.randn(576, 1024), b_enc=torch.zeros(1024),
            ...     hook="blocks.3.hook_resid_post", activation="topk", k=32,
            ... )
        """
        return cls(
            W_enc=W_enc,
            b_enc=b_enc,
            hook=hook,
            activation=activation,
            threshold=threshold,
            k=k,
            W_dec=W_dec,
            b_dec=b_dec,
            apply_b_dec_to_input=apply_b_dec_to_input,
            normalisation=normalisation,
            source=source,
        )

    @property
    def d_in(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.W_enc.shape[1])

    def describe(self) -> dict[str, Any]:
        """What a result records about the SAE: where it came from and what it is."""
        return {
            "source": self.source,
            "sha256": self.sha256,
            "hook": self.hook,
            "activation": self.activation,
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "k": self.k,
            "apply_b_dec_to_input": self.apply_b_dec_to_input,
            "normalisation": self.normalisation,
        }

    def __repr__(self) -> str:
        return (
            f"SAE(hook={self.hook!r}, d_in={self.d_in}, d_sae={self.d_sae}, "
            f"activation={self.activation!r}, source={self.source!r}, sha256={self.sha256[:16]!r})"
        )

    def check_feature(self, feature: Any) -> int:
        """A feature index as an int in [0, d_sae), or a ValueError saying what was wrong."""
        if isinstance(feature, Tensor) and feature.ndim == 0:
            feature = int(feature)
        if isinstance(feature, bool) or not isinstance(feature, int):
            raise TypeError(f"a feature is an integer index, got {feature!r}")
        if not 0 <= feature < self.d_sae:
            raise ValueError(f"feature {feature} is outside this SAE's [0, {self.d_sae})")
        return feature

    def check_width(self, width: int, where: str = "") -> None:
        """Refuses an activation whose width is not d_in, naming both numbers."""
        if width != self.d_in:
            raise ValueError(
                f"the SAE reads {self.d_in}-wide activations (d_in = {self.d_in}), but "
                f"{where or self.hook} is {width} wide; load the SAE trained for this model and "
                "hook point (or pass hook= to load_sae)"
            )

    @staticmethod
    def _full_precision(h: Tensor) -> Tensor:
        # A half-precision model's activation is encoded in float32, so that which features
        # fire (a threshold or a top-k comparison) is not decided by bfloat16 rounding.
        return h.float() if h.dtype in (torch.float16, torch.bfloat16) else h

    def _weights(self, like: Tensor) -> tuple[Tensor, Tensor]:
        options = {"dtype": like.dtype, "device": like.device}
        return self.W_enc.to(**options), self.b_enc.to(**options)

    def normalise(self, h: Tensor) -> Tensor:
        """N(h) along the last axis: the SAE's own input normalisation (identity for "none")."""
        if self.normalisation == "constant_norm_rescale":
            return h * (self.d_in**0.5 / h.norm(dim=-1, keepdim=True))
        if self.normalisation == "layer_norm":
            centred = h - h.mean(dim=-1, keepdim=True)
            return centred / (centred.std(dim=-1, keepdim=True) + LAYER_NORM_EPS)
        return h

    def encoder_input(self, h: Tensor) -> Tensor:
        """What the encoder multiplies: N(h), minus b_dec where the SAE subtracts it."""
        x = self.normalise(h)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec.to(dtype=h.dtype, device=h.device)
        return x

    def pre_activations(self, h: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """Every feature's encoder pre-activation at activations h [..., d_in] (in float32 for a
        half-precision h)."""
        self.check_width(h.shape[-1])
        h = self._full_precision(h)
        W_enc, b_enc = self._weights(h)
        return self.encoder_input(h) @ W_enc + b_enc

    def activations(self, pre: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        """Every feature's activation after the nonlinearity, from its pre-activations."""
        rectified = pre.clamp_min(0)
        if self.activation == "jumprelu":
            threshold = self.threshold.to(dtype=pre.dtype, device=pre.device)
            return rectified * (pre > threshold)
        if self.activation == "topk":
            values, indices = pre.topk(self.k, dim=-1)
            return torch.zeros_like(pre).scatter(-1, indices, values.clamp_min(0))
        return rectified

    def feature_gradients(
        self, h: Float[Tensor, "states d_in"], features: Tensor
    ) -> Float[Tensor, "states feature d_in"]:
        """d pre_f / d h for each state's h and each feature f: the direction a FeatureScope
        pulls back (exact: pre_f depends on the explained position's activation alone).

        Without normalisation it is W_enc[:, f] for every state (subtracting b_dec shifts pre_f
        but not its gradient); with one it is J_N(h)^T W_enc[:, f], J_N the normalisation's
        Jacobian at h.
        """
        self.check_width(h.shape[-1])
        h = self._full_precision(h)
        W_enc, _ = self._weights(h)
        columns = W_enc[:, features.to(W_enc.device)].T  # [feature, d_in]
        if self.normalisation == "none":
            return columns[None].expand(h.shape[0], -1, -1).clone()
        jacobians = torch.func.vmap(torch.func.jacrev(self.normalise))(h.detach())
        return torch.einsum("sij,fi->sfj", jacobians, columns)
