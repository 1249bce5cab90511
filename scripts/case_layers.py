"""Where influence flows by depth: layer x token maps of the three scopes (issue: layer scopes).

For the bias sentence (paper fig. 2) and the translation pair (paper fig. 3, the prediction of
the English text's last token from the German sentence and the English prefix), each scope's
score at every layer's residual stream (``tlscopes.attribute_layers``), each layer's row scaled
to its largest score, with the share of each layer's score on the attention-sink positions.
Writes layers.png, layers.html and layers_sinks.csv.

Usage: python scripts/case_layers.py --out DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import case_bias  # noqa: E402
import case_translation  # noqa: E402

import tlscopes as ts  # noqa: E402
from analyses import attention_sinks  # noqa: E402
from tlscopes.views.html import HtmlReport, html_page  # noqa: E402
from tlscopes.views.plotting import display_token, layer_page_parts  # noqa: E402

SCOPES = {
    "Fisher": ts.FisherScope(),
    "Temperature": ts.TemperatureScope(),
    "Semantic (top prediction)": ts.SemanticScope(),
}


def texts() -> dict[str, str]:
    translation = f"German: {case_translation.GERMAN} English: {case_translation.ENGLISH}"
    return {"bias sentence": case_bias.TEXT, "translation": translation.rstrip(".")}


def layer_maps(model: Any) -> tuple[dict, Any]:
    """Every (text, scope)'s LayerAttribution and sink-share table."""
    results, rows = {}, []
    for text_name, text in texts().items():
        for scope_name, scope in SCOPES.items():
            table, layered, sinks = attention_sinks.layer_sink_shares(model, text, scope)
            results[(text_name, scope_name)] = (layered, sinks)
            for row in table.itertuples():
                rows.append(
                    {
                        "text": text_name,
                        "scope": scope_name,
                        "layer": row.layer,
                        "share_on_sinks": row.share_on_sinks,
                        "share_on_bos": row.share_on_bos,
                        "sinks": " ".join(map(str, sinks)),
                    }
                )
    import pandas as pd

    return results, pd.DataFrame(rows)


def plot_layer_maps(results: dict) -> Figure:
    names = list(texts())
    figure = Figure(figsize=(19, 10), layout="constrained")
    axes = figure.subplots(len(names), len(SCOPES), squeeze=False)
    for row, text_name in enumerate(names):
        for column, scope_name in enumerate(SCOPES):
            layered, sinks = results[(text_name, scope_name)]
            position = int(layered.positions[0])
            scores = layered.scores[0, :, : position + 1].double()
            shown = scores / scores.amax(dim=1, keepdim=True).clamp_min(1e-300)
            axis = axes[row, column]
            axis.imshow(shown.numpy(), aspect="auto", cmap="Blues", vmin=0, vmax=1)
            tokens = layered.tokens[0][: position + 1]
            step = max(1, len(tokens) // 24)
            axis.set_xticks(range(0, len(tokens), step))
            axis.set_xticklabels(
                [display_token(t) for t in tokens[::step]], rotation=70, fontsize=7
            )
            axis.set_ylabel("layer")
            for sink in sinks:
                axis.axvline(sink, color="#e07b00", linewidth=0.8, alpha=0.6)
            axis.set_title(f"{scope_name} scope, {text_name}", fontsize=10)
    figure.suptitle(
        "Score at each layer's residual stream (row-normalised; orange: attention-sink positions)"
    )
    return figure


def run(model: Any, out: Path) -> list[Path]:
    """Writes layers.png, layers.html and layers_sinks.csv under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    print("   layers: three scopes by layer on the bias sentence and the translation", flush=True)
    results, table = layer_maps(model)
    png, page, csv = out / "layers.png", out / "layers.html", out / "layers_sinks.csv"
    plot_layer_maps(results).savefig(png, dpi=90)
    table.to_csv(csv, index=False)
    parts = []
    for (text_name, scope_name), (layered, _) in results.items():
        parts += layer_page_parts(layered, f"{scope_name} scope, {text_name}")
    HtmlReport(html_page("tlscopes: scopes by layer", parts)).save(page)
    return [png, page, csv]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    args = parser.parse_args(argv)
    for path in run(ts.load_model(), args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
