"""Figure 15: the Integrated Gradients path integrand, token by token (paper appendix A.6).

The integrand itself is computed by :func:`tlscopes.analysis.path_integrand`; this module
draws it.
"""

from __future__ import annotations

from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from tlscopes.analysis import PathIntegrand


def plot_path_integrand(integrand: PathIntegrand, title: str | None = None) -> Figure:
    """Heat map of the integrand norms: alpha (rows) by token (columns), log colour scale.

    A side panel gives each alpha's norm-weighted mean position (0: first token, 1: the
    explained one): attention sinks would pull it towards 0.
    """
    n_tokens = integrand.position + 1
    norms = integrand.norms[:, :n_tokens].double().numpy()
    width = min(18.0, 3.5 + 0.42 * n_tokens)
    figure = Figure(figsize=(width, 1.6 + 0.32 * len(norms)))
    heat, side = figure.subplots(1, 2, gridspec_kw={"width_ratios": [6, 1]})
    positive = norms[norms > 0]
    image = heat.imshow(
        norms,
        aspect="auto",
        cmap="Blues",
        norm=LogNorm(vmin=max(positive.min(), positive.max() * 1e-4), vmax=positive.max()),
        interpolation="nearest",
    )
    heat.set_xticks(range(n_tokens))
    heat.set_xticklabels([repr(t)[1:-1] for t in integrand.tokens[:n_tokens]], rotation=70)
    heat.set_yticks(range(len(norms)))
    heat.set_yticklabels([f"{a:g}" for a in integrand.alphas.tolist()])
    heat.set_ylabel("α (path point; 1 = real input)")
    figure.colorbar(image, ax=heat, pad=0.01, label="‖∇ₓₜ z(αX)‖₂")
    centre = integrand.centre_of_mass().numpy()
    side.barh(range(len(centre)), centre, color="#1f5fbf")
    side.axvline(0.5, color="0.5", lw=0.8, ls=":")
    side.set_ylim(len(centre) - 0.5, -0.5)
    side.set_yticks([])
    side.set_xlim(0, 1)
    side.set_xlabel("centre of mass\n(0 first token, 1 last)")
    heat.set_title(
        title or f"IG integrand along the path, target {integrand.target!r} (paper fig. 15)"
    )
    figure.tight_layout()
    return figure


__all__ = ["plot_path_integrand"]
