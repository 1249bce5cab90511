"""Model-parameter randomisation: do the attributions depend on the model's weights?

The sanity check of Adebayo et al. 2018 ("Sanity checks for saliency maps", NeurIPS): an
explanation that stays the same when the model's learned weights are replaced by random ones
cannot be explaining what the model learned. Each method explains each passage's ground-truth
target (as :mod:`tlscopes.evaluation.ablation` does) once with the trained model and once per
*randomisation*:

- **cascading**, from the top block down: the top 1, 2, 4, ... blocks, then all of them
  (:func:`cascade_depths`);
- **independent**: each block alone.

Per passage, method and randomisation the row holds the Spearman rho between the original and
the randomised scores (absolute values, over the context: every input position but a BOS), the
Jaccard index of their top-k context positions (k = 10% of the context, rounded half up, at
least 1: :func:`tlscopes.evaluation.aopc_arithmetic.ablation_count`), and, to tell a map that
stays because the prediction stays from one that ignores the model, how the explained
prediction changed: the Spearman rho between the original and the randomised next-token logits
at the explained position (over the whole vocabulary), the change of the target's
log-probability, and whether the top-1 token stayed. The ``random`` method is model-blind by
construction, so its rho is 1 everywhere: the line a method fails the check on.

**Initialisation.** A randomised block's parameters are drawn as the model's Hugging Face class
initialises them (``PreTrainedModel._init_weights`` for Llama, Gemma and GPT-2): every weight
matrix (linear maps, in TransformerLens' per-head shapes too) from normal(0,
``initializer_range``), read from ``model.cfg.initializer_range`` (the Hugging Face config's
value for models loaded by :func:`tlscopes.models.loading.load_model`); biases 0; normalisation
weights reset to their initial value (1, or 0 for Hugging Face Gemma's RMSNorm, which multiplies
by 1 + weight) and their biases to 0. GPT-2's extra 1/sqrt(2 n_layers) scaling of its output
projections is not applied. Block i's draws come from a generator seeded by (seed, i), so block
i gets the same random weights in every randomisation that includes it. The original tensors
are copied before and written back afterwards in a ``finally:``, so the model leaves
:func:`randomised_blocks` exactly as it came (:func:`parameter_hash` checks it).

:func:`run_sanity` writes a resumable run directory as ``tlscopes evaluate`` does
(:mod:`tlscopes.evaluation.run_directory`): ``run.json`` (the settings), ``per_passage.csv``
(appended and fsynced per passage; a rerun computes only missing passages), ``skipped.csv``,
``summary.csv`` (:func:`summarize_sanity`) and ``.lock``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from tlscopes.core.inputs import prepare_inputs
from tlscopes.evaluation.ablation import Settings, attribute_passages
from tlscopes.evaluation.aopc_arithmetic import ablation_count, top_positions
from tlscopes.evaluation.passages import (
    Passage,
    PassageInput,
    UnusablePassage,
    passage_seed,
    prepare_passage,
    run_order,
    text_hash,
)
from tlscopes.evaluation.run_directory import (
    LOCK_FILE,
    SKIPPED,
    SKIPPED_COLUMNS,
    _append,
    _check_config,
    _read_skipped,
    exclusive_lock,
    optional,
    parse_float,
    parse_int,
    parse_text,
    read_rows,
    write_atomic,
)
from tlscopes.evaluation.statistics import bootstrap_interval, spearman
from tlscopes.methods.baselines import scaled_forward
from tlscopes.methods.registry import get_method
from tlscopes.protocols import TransformerLensModel

MODES = ("cascade", "independent")
PER_PASSAGE = "per_passage.csv"
SUMMARY = "summary.csv"
TOP_FRACTION = 0.1

COLUMNS = [
    "task",
    "passage",
    "text_sha",
    "method",
    "mode",
    "blocks",
    "n_blocks",
    "n_context",
    "spearman",
    "jaccard",
    "logit_spearman",
    "target_logp_change",
    "top1_same",
]
_KEY = ["task", "passage", "method", "mode", "blocks"]
_PARSERS = {
    "task": parse_text,
    "passage": parse_int,
    "text_sha": parse_text,
    "method": parse_text,
    "mode": parse_text,
    "blocks": parse_text,
    "n_blocks": parse_int,
    "n_context": parse_int,
    # NaN where a map is constant over the context (a one-token context).
    "spearman": optional(parse_float),
    "jaccard": parse_float,
    "logit_spearman": parse_float,
    "target_logp_change": parse_float,
    "top1_same": parse_int,
}
_TEXT_COLUMNS = ("task", "text_sha", "method", "mode", "blocks")


@dataclass(frozen=True)
class Randomisation:
    """Which blocks are re-initialised together.

    Attributes:
        mode: ``"cascade"`` (the top blocks) or ``"independent"`` (one block).
        blocks: the block indices, increasing.
    """

    mode: str
    blocks: tuple[int, ...]

    @property
    def label(self) -> str:
        """The blocks as written in per_passage.csv: ``"none"``, ``"7"`` or ``"24-29"``."""
        if not self.blocks:
            return "none"
        if len(self.blocks) == 1:
            return str(self.blocks[0])
        return f"{self.blocks[0]}-{self.blocks[-1]}"


def cascade_depths(n_layers: int) -> list[int]:
    """How many top blocks each cascading step randomises: 1, 2, 4, ... below `n_layers`, then
    `n_layers` (all of them).

    >>> cascade_depths(30)
    [1, 2, 4, 8, 16, 30]
    """
    if n_layers < 1:
        raise ValueError(f"a model needs at least one block, got n_layers={n_layers}")
    depths, depth = [], 1
    while depth < n_layers:
        depths.append(depth)
        depth *= 2
    return [*depths, n_layers]


def randomisations(
    n_layers: int,
    modes: Sequence[str] = MODES,
    depths: Sequence[int] | None = None,
) -> list[Randomisation]:
    """The cascade (top `depths` blocks, default :func:`cascade_depths`; a depth of 0 is the
    trained model itself, a control) and each block independently, in that order."""
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes must be some of {', '.join(MODES)}, got {list(modes)}")
    plan = []
    if "cascade" in modes:
        for depth in cascade_depths(n_layers) if depths is None else depths:
            if not 0 <= depth <= n_layers:
                raise ValueError(f"a cascade depth must be in 0..{n_layers}, got {depth}")
            plan.append(Randomisation("cascade", tuple(range(n_layers - depth, n_layers))))
    if "independent" in modes:
        plan += [Randomisation("independent", (block,)) for block in range(n_layers)]
    return plan


def initializer_range(model: TransformerLensModel) -> float:
    """The standard deviation of the model's weight initialisation (``cfg.initializer_range``)."""
    value = getattr(model.cfg, "initializer_range", None)
    if value is None or float(value) <= 0:
        raise ValueError(
            f"model.cfg.initializer_range is {value!r}; set it to the standard deviation the "
            "model's weights are initialised with (its Hugging Face config's initializer_range)"
        )
    return float(value)


def _is_norm(module: torch.nn.Module) -> bool:
    return "Norm" in type(module).__name__


def _norm_weight_init(module: torch.nn.Module) -> float:
    # Hugging Face Gemma's RMSNorm multiplies by (1 + weight) and starts the weight at 0;
    # TransformerLens stores Gemma's norms with the 1 added, as for every other family.
    return 0.0 if type(module).__name__.startswith("Gemma") else 1.0


def block_parameters(model: TransformerLensModel, block: int) -> list[tuple[torch.nn.Module, str]]:
    """(owning module, parameter name) for every parameter of ``model.blocks[block]``, each
    once (HookedTransformer's own parameters, or the Hugging Face modules a TransformerBridge
    block wraps). A parameter that is a view into another one's storage (a bridge's q, k and v
    split from GPT-2's fused c_attn) is left out: the one holding the whole storage covers it."""
    n_layers = len(model.blocks)
    if not 0 <= block < n_layers:
        raise ValueError(f"block {block} does not exist; the model has blocks 0..{n_layers - 1}")
    seen: set[int] = set()
    owned = []
    for module in model.blocks[block].modules():
        for name, parameter in module.named_parameters(recurse=False):
            if id(parameter) not in seen:
                seen.add(id(parameter))
                owned.append((module, name, parameter))
    whole = {
        p.untyped_storage().data_ptr()
        for _, _, p in owned
        if p.data_ptr() == p.untyped_storage().data_ptr()
        and p.numel() * p.element_size() == p.untyped_storage().nbytes()
    }
    kept, covered = [], set()
    for module, name, parameter in owned:
        storage = parameter.untyped_storage().data_ptr()
        is_whole = (
            parameter.numel() * parameter.element_size() == parameter.untyped_storage().nbytes()
        )
        if storage in whole and not is_whole:
            continue  # a view of a parameter listed whole
        if storage in whole:
            if storage in covered:
                continue
            covered.add(storage)
        kept.append((module, name))
    return kept


def block_draws(
    model: TransformerLensModel, block: int, seed: int, std: float | None = None
) -> list[Tensor]:
    """The re-initialised values of ``model.blocks[block]``'s parameters, in
    :func:`block_parameters` order, seeded by (seed, block); see the module docstring for the
    scheme. `std` defaults to :func:`initializer_range`. The model is not changed."""
    std = initializer_range(model) if std is None else std
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(block))
    values = []
    for module, name in block_parameters(model, block):
        parameter = getattr(module, name).detach()
        if _is_norm(module):
            value = _norm_weight_init(module) if name in ("w", "weight") else 0.0
            drawn = torch.full_like(parameter, value)
        elif parameter.ndim >= 2:
            drawn = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            drawn = (drawn * std).to(parameter.device)
        else:
            drawn = torch.zeros_like(parameter)
        values.append(drawn)
    return values


def reinitialise_block_(
    model: TransformerLensModel, block: int, seed: int, std: float | None = None
) -> None:
    """Re-initialises ``model.blocks[block]`` in place with :func:`block_draws`."""
    values = block_draws(model, block, seed, std)
    with torch.no_grad():
        for (module, name), value in zip(block_parameters(model, block), values, strict=True):
            getattr(module, name).copy_(value)


@contextlib.contextmanager
def randomised_blocks(
    model: TransformerLensModel,
    blocks: Sequence[int],
    seed: int = 0,
    draws: dict[int, list[Tensor]] | None = None,
) -> Iterator[None]:
    """Within the block, ``model.blocks[i]`` for each i in `blocks` is re-initialised
    (:func:`block_draws`); afterwards every one of their parameters holds its original values
    again, also after an exception. `draws` (block -> values), if given, keeps each block's
    draws for the next call with the same model and seed, which then skips drawing them."""
    owned = {block: block_parameters(model, block) for block in blocks}
    saved = {
        block: [getattr(module, name).detach().clone() for module, name in pairs]
        for block, pairs in owned.items()
    }
    try:
        std = initializer_range(model)
        with torch.no_grad():
            for block, pairs in owned.items():
                if draws is not None and block in draws:
                    values = draws[block]
                else:
                    values = block_draws(model, block, seed, std)
                    if draws is not None:
                        draws[block] = values
                for (module, name), value in zip(pairs, values, strict=True):
                    getattr(module, name).copy_(value)
        yield
    finally:
        with torch.no_grad():
            for block, pairs in owned.items():
                for (module, name), original in zip(pairs, saved[block], strict=True):
                    getattr(module, name).copy_(original)


def parameter_hash(model: TransformerLensModel) -> str:
    """The sha256 of every parameter's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters(), key=lambda pair: pair[0]):
        tensor = parameter.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy() if tensor.numel() else b"")
    return digest.hexdigest()


def jaccard(a: Sequence[int], b: Sequence[int]) -> float:
    """|A and B| / |A or B| of two sets of positions (1 for two empty sets)."""
    first, second = set(a), set(b)
    union = first | second
    return len(first & second) / len(union) if union else 1.0


def _explained_log_probs(model: TransformerLensModel, passage: Passage) -> Tensor:
    """log p over the vocabulary at the explained position (the engine's forward pass, which
    computes the unembedding there only)."""
    prepared = prepare_inputs(model, passage.tokens, passage.position)
    logits = scaled_forward(model, prepared).logits[0]
    return torch.log_softmax(logits.detach().double().cpu(), dim=-1)


@dataclass(frozen=True)
class SanitySettings:
    """What a randomisation run's numbers depend on besides the model and the passages.

    Attributes:
        modes: ``"cascade"`` and/or ``"independent"``.
        depths: the cascade's depths (None: :func:`cascade_depths`).
        seed: the randomisation's seed (and the random method's, as in ``tlscopes evaluate``).
        n_steps: Integrated Gradients' path points.
        top_fraction: the share of the context whose top positions the Jaccard index compares.
    """

    modes: tuple[str, ...] = MODES
    depths: tuple[int, ...] | None = None
    seed: int = 0
    n_steps: int = 100
    top_fraction: float = TOP_FRACTION
    ig_batch_size: int | None = None

    def attribution_settings(self) -> Settings:
        return Settings(n_steps=self.n_steps, seed=self.seed, ig_batch_size=self.ig_batch_size)

    def record(self, model: TransformerLensModel, methods: Sequence[str]) -> dict[str, Any]:
        plan = randomisations(len(model.blocks), self.modes, self.depths)
        return {
            "model": str(getattr(model.cfg, "model_name", "")),
            "methods": list(methods),
            "randomisations": [f"{r.mode}:{r.label}" for r in plan],
            "seed": self.seed,
            "n_steps": self.n_steps,
            "top_fraction": self.top_fraction,
            "initialisation": "normal(0, initializer_range) weights, zero biases, norms reset",
            "initializer_range": initializer_range(model),
            "parameter_sha256": parameter_hash(model),
        }


def sanity_rows(
    model: TransformerLensModel,
    text: PassageInput,
    methods: Sequence[str],
    *,
    task: str = "",
    index: int = 0,
    settings: SanitySettings = SanitySettings(),  # noqa: B008 (frozen, immutable)
    draws: dict[int, list[Tensor]] | None = None,
) -> list[dict[str, Any]]:
    """One row per (method, randomisation) for one passage (see the module docstring).
    `draws` caches the blocks' random values between passages (:func:`randomised_blocks`)."""
    passage = prepare_passage(model, text)
    seed = passage_seed(settings.seed, task, index)
    attribution = settings.attribution_settings()
    context = passage.context
    count = ablation_count(settings.top_fraction, len(context))

    def maps() -> dict[str, Tensor]:
        results = attribute_passages(model, [passage], methods, attribution, [seed])[0]
        return {
            name: result.scores[0].detach().abs().double().cpu() for name, result in results.items()
        }

    original, original_log_probs = maps(), _explained_log_probs(model, passage)
    original_top = {
        name: top_positions(values, context, count) for name, values in original.items()
    }
    rows = []
    for randomisation in randomisations(len(model.blocks), settings.modes, settings.depths):
        with randomised_blocks(model, randomisation.blocks, settings.seed, draws):
            randomised, log_probs = maps(), _explained_log_probs(model, passage)
        logit_rho = spearman(original_log_probs.numpy(), log_probs.numpy())
        change = float(log_probs[passage.target_id] - original_log_probs[passage.target_id])
        same = int(int(log_probs.argmax()) == int(original_log_probs.argmax()))
        for name in methods:
            first, second = original[name][context], randomised[name][context]
            rows.append(
                {
                    "task": task,
                    "passage": index,
                    "text_sha": text_hash(text),
                    "method": name,
                    "mode": randomisation.mode,
                    "blocks": randomisation.label,
                    "n_blocks": len(randomisation.blocks),
                    "n_context": len(context),
                    "spearman": spearman(first.numpy(), second.numpy()),
                    "jaccard": jaccard(
                        original_top[name], top_positions(randomised[name], context, count)
                    ),
                    "logit_spearman": logit_rho,
                    "target_logp_change": change,
                    "top1_same": same,
                }
            )
    return rows


def summarize_sanity(per_passage: pd.DataFrame, *, n_resamples: int = 2000) -> pd.DataFrame:
    """Per (task, method, mode, blocks): n, the mean Spearman rho with its standard error and
    95% bootstrap interval, its median, the mean top-k Jaccard, the mean logit rho and the share
    of passages whose top-1 prediction stayed."""
    keys = ["task", "method", "mode", "n_blocks", "blocks"]
    records = []
    if per_passage.empty:
        return pd.DataFrame(columns=[*keys, "n"])
    for key, group in per_passage.groupby(keys, sort=False):
        rho = group["spearman"].astype(float).dropna().to_numpy()
        low, high = bootstrap_interval(rho, n_resamples=n_resamples) if len(rho) else (np.nan,) * 2
        records.append(
            {
                **dict(zip(keys, key, strict=True)),
                "n": len(group),
                "spearman_mean": float(rho.mean()) if len(rho) else np.nan,
                "spearman_sem": float(rho.std(ddof=1) / np.sqrt(len(rho)))
                if len(rho) > 1
                else np.nan,
                "spearman_low": low,
                "spearman_high": high,
                "spearman_median": float(np.median(rho)) if len(rho) else np.nan,
                "jaccard_mean": float(group["jaccard"].astype(float).mean()),
                "logit_spearman_mean": float(group["logit_spearman"].astype(float).mean()),
                "top1_same_share": float(group["top1_same"].astype(float).mean()),
            }
        )
    order = {name: i for i, name in enumerate(dict.fromkeys(per_passage["method"]))}
    frame = pd.DataFrame(records)
    frame["_order"] = frame["method"].map(order)
    # Blocks in numeric order ("2" before "10"): each block alone, or a cascade's range.
    frame["_first"] = frame["blocks"].astype(str).str.split("-").str[0].astype(int)
    frame = frame.sort_values(["task", "mode", "_order", "n_blocks", "_first"], kind="stable")
    return frame.drop(columns=["_order", "_first"]).reset_index(drop=True)


@dataclass(frozen=True)
class SanityRun:
    """The outcome of :func:`run_sanity`.

    Attributes:
        per_passage: every row in per_passage.csv (finished earlier or now).
        summary: :func:`summarize_sanity` of those rows.
        computed: passages computed by this call.
        already_done: passages of this call that had every row before it.
        skipped: the unusable passages (task, passage, text_sha, reason).
    """

    per_passage: pd.DataFrame
    summary: pd.DataFrame
    computed: int
    already_done: int = 0
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SKIPPED_COLUMNS))


def read_sanity_rows(path: str | Path, *, warn: bool = True) -> pd.DataFrame:
    """The usable rows of a randomisation run's per_passage.csv (empty if it has none)."""
    rows = read_rows(Path(path), COLUMNS, _PARSERS, _KEY, text_columns=_TEXT_COLUMNS, warn=warn)
    return pd.DataFrame(columns=COLUMNS) if rows is None else rows.frame


def run_sanity(
    model: TransformerLensModel,
    passages: dict[str, Sequence[PassageInput]],
    methods: Sequence[str],
    output: str | Path,
    *,
    settings: SanitySettings = SanitySettings(),  # noqa: B008 (frozen, immutable)
    progress: bool = True,
    summary_every: int = 10,
) -> SanityRun:
    """Runs the randomisation check on every passage of every task, resumably.

    A passage's rows are appended to ``output/per_passage.csv`` in one fsynced write once all of
    them are computed; a rerun skips passages that have all their rows, and removes the rows of a
    passage an interruption left incomplete before computing it again. ``summary.csv`` is
    rewritten every `summary_every` passages and at the end. The run holds ``output/.lock``.

    Raises:
        tlscopes.evaluation.run_directory.RunDirectoryError: another run holds the directory.
        ValueError: the directory holds a run with other settings, methods or weights.
    """
    from tqdm.auto import tqdm

    methods = list(dict.fromkeys(methods))
    for name in methods:
        get_method(name)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    expected = len(methods) * len(
        randomisations(len(model.blocks), settings.modes, settings.depths)
    )
    with exclusive_lock(output, LOCK_FILE):
        _check_config(output, settings.record(model, methods))
        path, skipped_path = output / PER_PASSAGE, output / SKIPPED
        frame = _complete_rows(path, expected)
        done = {(str(t), int(p)) for t, p in frame[["task", "passage"]].itertuples(index=False)}
        skipped_rows = _read_skipped(skipped_path)
        unusable = (
            {}
            if skipped_rows is None
            else {
                (str(r["task"]), int(r["passage"])): r
                for r in skipped_rows.frame.to_dict("records")
            }
        )
        order = run_order(passages)
        todo = [key for key in order if key not in done and key not in unusable]
        skipped = [unusable[key] for key in order if key in unusable]
        bar = tqdm(total=len(order), initial=len(order) - len(todo), disable=not progress)
        computed = 0
        draws: dict[int, list[Tensor]] = {}
        for count, (task, index) in enumerate(todo, start=1):
            text = passages[task][index]
            bar.set_description(f"{task} {index}")
            try:
                rows = sanity_rows(
                    model, text, methods, task=task, index=index, settings=settings, draws=draws
                )
            except UnusablePassage as error:
                record = {"task": task, "passage": index, "text_sha": text_hash(text)}
                skipped.append({**record, "reason": " ".join(str(error).split())})
                _append(skipped_path, SKIPPED_COLUMNS, skipped[-1:])
            else:
                _append(path, COLUMNS, rows)
                computed += 1
            bar.update(1)
            if count % summary_every == 0:
                _write_summary(output)
        bar.close()
        frame = _write_summary(output)
    return SanityRun(
        frame,
        summarize_sanity(frame),
        computed,
        already_done=len([key for key in order if key in done]),
        skipped=pd.DataFrame(skipped, columns=SKIPPED_COLUMNS),
    )


def _complete_rows(path: Path, expected: int) -> pd.DataFrame:
    """The rows of passages that have all `expected` rows; the file is rewritten without the
    others (a passage whose write an interruption cut short) so they are computed afresh."""
    rows = read_rows(path, COLUMNS, _PARSERS, _KEY, text_columns=_TEXT_COLUMNS)
    if rows is None:
        return pd.DataFrame(columns=COLUMNS)
    frame = rows.frame
    sizes = frame.groupby(["task", "passage"])["method"].transform("size")
    complete = frame[sizes == expected]
    if len(complete) != len(frame) or rows.dropped:
        write_atomic(path, complete.to_csv(index=False, lineterminator="\n"))
    return complete.reset_index(drop=True)


def _write_summary(output: Path) -> pd.DataFrame:
    frame = read_sanity_rows(output / PER_PASSAGE, warn=False)
    text = summarize_sanity(frame).to_csv(index=False, lineterminator="\n")
    target = output / SUMMARY
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        write_atomic(target, text)
    return frame


def plot_sanity(summary: pd.DataFrame, title: str = "") -> Any:
    """A matplotlib figure: mean Spearman rho against the number of top blocks randomised
    (cascade) and against the block randomised alone (independent), one panel for each mode the
    summary has, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {
        "cascade": "top blocks randomised (cascade)",
        "independent": "block randomised alone",
    }
    present = set(summary["mode"]) if "mode" in summary else set()
    modes = [mode for mode in MODES if mode in present] or ["cascade"]
    figure, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4), squeeze=False)
    for axis, mode in zip(axes[0], modes, strict=True):
        part = summary[summary["mode"] == mode] if present else summary.iloc[:0]
        for method, rows in part.groupby("method", sort=False):
            x = rows["n_blocks"] if mode == "cascade" else rows["blocks"].astype(int)
            axis.plot(x, rows["spearman_mean"], marker="o", label=method)
        if mode == "cascade" and not part.empty:
            axis.set_xscale("symlog", linthresh=1)
            ticks = sorted(set(part["n_blocks"].astype(int)))
            axis.set_xticks(ticks, [str(t) for t in ticks])
        axis.set_xlabel(labels[mode])
        axis.axhline(0, color="grey", linewidth=0.5)
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    axes[0][0].set_ylabel("Spearman rho, original vs randomised map")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


__all__ = [
    "COLUMNS",
    "MODES",
    "Randomisation",
    "SanityRun",
    "SanitySettings",
    "block_draws",
    "block_parameters",
    "cascade_depths",
    "initializer_range",
    "jaccard",
    "parameter_hash",
    "plot_sanity",
    "randomisations",
    "randomised_blocks",
    "read_sanity_rows",
    "reinitialise_block_",
    "run_sanity",
    "sanity_rows",
    "summarize_sanity",
]
