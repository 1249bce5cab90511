"""Several passages per attribution pass (``tlscopes evaluate --passages-per-batch N``).

Passages whose inputs have the same number of tokens (and that miss the same methods) are
stacked into one batch for the attribution passes: the shared forward and backward passes of
Fisher, Temperature, Semantic Scope, saliency and Input x Gradient, and Integrated Gradients'
path points, with one target per passage. Equal lengths need no padding, so each passage's
scores are those it gets alone (up to floating-point summation order). The ablation passes stay
per passage (each is already a batch of all of its ablation sets), and random uses each
passage's own seed. Passages are grouped within windows of ``4 * N`` consecutive passages of
the run's order, so a run cut short is still balanced across tasks; rows are appended as each
group finishes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

from tlscopes.evaluation.ablation import (
    Settings,
    attribute_passages,
    evaluate_passage,
    passage_rows,
)
from tlscopes.evaluation.passages import (
    PassageInput,
    UnusablePassage,
    describe_passage,
    passage_seed,
    prepare_passage,
)
from tlscopes.protocols import TransformerLensModel

Item = tuple[str, int, list[str]]  # task, passage index, methods still missing
# Passages are grouped within windows of WINDOW * N consecutive passages of the run's order.
WINDOW = 4


def evaluate_in_batches(
    model: TransformerLensModel,
    passages: dict[str, Sequence[PassageInput]],
    todo: Sequence[Item],
    settings: Settings,
    size: int,
    evaluate_one: Callable[..., list[dict[str, Any]]] = evaluate_passage,
    starting: Callable[[str], None] = lambda description: None,
) -> Iterator[tuple[Item, list[dict[str, Any]] | UnusablePassage]]:
    """Each item of `todo` with its rows (as :func:`tlscopes.evaluation.ablation.evaluate_passage` gives
    them) or the :class:`UnusablePassage` error that refused it, in groups of up to `size`
    passages of one input length; with size 1, `evaluate_one` on one passage at a time in
    `todo`'s order. `starting` is told which passages are computed next (for a progress bar)."""
    if size < 1:
        raise ValueError(f"passages per batch must be positive, got {size}")
    if size == 1:
        for item in todo:
            task, index, missing = item
            text = passages[task][index]
            starting(f"{task} passage {index}")
            try:
                rows = evaluate_one(model, text, missing, task=task, index=index, settings=settings)
            except UnusablePassage as error:
                yield item, error
                continue
            except Exception as error:
                if hasattr(error, "add_note"):  # Python 3.11+: say where the run stopped
                    error.add_note(
                        f"while evaluating {task} passage {index} ({describe_passage(text)})"
                    )
                raise
            yield item, rows
        return
    window = WINDOW * size
    for start in range(0, len(todo), window):
        members: list[tuple[Item, Any]] = []
        for item in todo[start : start + window]:
            task, index, _ = item
            try:
                passage = prepare_passage(
                    model, passages[task][index], bos=settings.protocol == "paper"
                )
            except UnusablePassage as error:
                yield item, error
                continue
            members.append((item, passage))
        keys = [(passage.tokens.shape[1], tuple(item[2])) for item, passage in members]
        for group in batch_groups(keys, size):
            methods = keys[group[0]][1]
            chunk = [members[position] for position in group]
            seeds = [passage_seed(settings.seed, task, index) for (task, index, _), _ in chunk]
            starting(", ".join(f"{task} passage {index}" for (task, index, _), _ in chunk))
            try:
                results = attribute_passages(
                    model, [passage for _, passage in chunk], methods, settings, seeds
                )
                for (item, passage), result in zip(chunk, results, strict=True):
                    task, index, _ = item
                    text = passages[task][index]
                    rows = passage_rows(
                        model, passage, text, result, task=task, index=index, settings=settings
                    )
                    yield item, rows
            except Exception as error:
                if hasattr(error, "add_note"):  # Python 3.11+: say where the run stopped
                    where = ", ".join(f"{t} passage {i}" for (t, i, _), _ in chunk)
                    first = passages[chunk[0][0][0]][chunk[0][0][1]]
                    error.add_note(f"while evaluating {where} ({describe_passage(first)})")
                raise


def batch_groups(keys: Sequence[Hashable], size: int) -> list[list[int]]:
    """The batches one window is split into: positions with equal keys (input length, missing
    methods), in first-seen order, up to `size` per batch.

    >>> batch_groups([5, 7, 5, 5, 7], 2)
    [[0, 2], [3], [1, 4]]
    """
    groups: dict[Hashable, list[int]] = {}
    for position, key in enumerate(keys):
        groups.setdefault(key, []).append(position)
    return [
        members[first : first + size]
        for members in groups.values()
        for first in range(0, len(members), size)
    ]


__all__ = ["WINDOW", "batch_groups", "evaluate_in_batches"]
