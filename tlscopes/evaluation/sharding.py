"""Passages sharded over processes (``torchrun`` / ``accelerate launch``), and the merge.

A launcher sets ``RANK`` and ``WORLD_SIZE`` in each process's environment; :class:`Shard`
reads them. The run's passages, in the interleaved order of a one-process run, are dealt round
robin: rank r takes positions r, r + W, r + 2W, ... of that order, so every rank gets about as
many passages of each task. Each rank appends and fsyncs its own files
(``per_passage.rank<r>.csv``, ``skipped.rank<r>.csv``), holds its own lock
(``.lock.rank<r>``, and ``.lock`` shared, which keeps out a one-process run and a merge),
and on a rerun resumes its own shard (passages already in the merged
``per_passage.csv`` count as done). ``shards.json`` records the order of the tasks and methods.

:func:`merge_shards` (automatic on rank 0 once every rank is done, when torch.distributed is
initialised; otherwise ``tlscopes evaluate --merge DIR``) writes ``per_passage.csv`` and
``skipped.csv`` with exactly the lines one process would have written, in its order (passage
index, then task, then method), and removes the shard files. A row present twice (a merge cut
short before the shards were removed) is kept once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlscopes.evaluation.passages import run_order
from tlscopes.evaluation.run_directory import (
    MERGE_ENTRY,
    PER_PASSAGE,
    RUN_CONFIG,
    SKIPPED,
    SKIPPED_COLUMNS,
    SKIPPED_PARSERS,
    RunDirectoryError,
    _header_of,
    _parsers,
    exclusive_lock,
    explained_write_errors,
    read_json,
    read_rows,
    write_atomic,
)

SHARDS = "shards.json"


@dataclass(frozen=True)
class Shard:
    """This process's share of a run: rank r of `world_size` processes."""

    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, world size {self.world_size})")

    @classmethod
    def from_environment(cls) -> Shard:
        """RANK and WORLD_SIZE as torchrun and accelerate set them (0 and 1 when unset)."""
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))

    @property
    def sharded(self) -> bool:
        return self.world_size > 1

    def file(self, name: str) -> str:
        """This rank's file for `name` (per_passage.csv -> per_passage.rank1.csv)."""
        if not self.sharded:
            return name
        stem, _, suffix = name.rpartition(".")
        return f"{stem}.rank{self.rank}.{suffix}" if stem else f"{name}.rank{self.rank}"

    def take(self, order: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
        """This rank's passages of the run's order: positions rank, rank + W, ..."""
        return list(order[self.rank :: self.world_size])


def write_order(
    output: Path,
    world_size: int,
    tasks: Sequence[str],
    methods: Sequence[str],
    counts: Mapping[str, int] | None = None,
) -> None:
    """Records what the merge orders by and, with `counts` (task -> number of passages), what
    it checks every shard holds (every rank writes the same content, atomically)."""
    record: dict[str, Any] = {
        "world_size": world_size,
        "tasks": list(tasks),
        "methods": list(methods),
    }
    if counts is not None:
        record["passages"] = {task: int(counts[task]) for task in tasks}
    if read_json(output / SHARDS) != record:
        write_atomic(output / SHARDS, json.dumps(record, indent=1) + "\n")


def _lines(path: Path, header: Sequence[str], key: Sequence[str]) -> list[tuple[tuple, str]]:
    text_columns = ("task", "method", "text_sha", "reason")
    parsers = _parsers(header) if key[-1] == "method" else SKIPPED_PARSERS
    rows = read_rows(path, header, parsers, key, text_columns=text_columns)
    if rows is None or not rows.text:
        return []
    lines = rows.text.splitlines(keepends=True)[1:]
    keys = rows.frame[list(key)].astype(str).itertuples(index=False, name=None)
    return list(zip(keys, lines, strict=True))


@dataclass
class _Collected:
    """A file's rows over the merged file and the shard files, before the merge writes them."""

    name: str
    header: Sequence[str]
    shards: list[Path]
    lines: dict[tuple, str]


def _collect(output: Path, name: str, key: Sequence[str]) -> _Collected:
    target = output / name
    shards = sorted(output.glob(name.replace(".csv", ".rank*.csv")))
    sources = ([target] if target.exists() else []) + shards
    header = _header_of(sources[0]) if name == PER_PASSAGE and sources else SKIPPED_COLUMNS
    for source in sources:
        if _header_of(source) != list(header):
            raise RunDirectoryError(f"{source} has another header than {sources[0]}; not merged")
    seen: dict[tuple, str] = {}
    for source in sources:
        for row_key, line in _lines(source, header, key):
            seen.setdefault(row_key, line)
    return _Collected(name, header, shards, seen)


def _write(output: Path, collected: _Collected, rank_of: dict[str, dict[str, int]]) -> None:
    if not collected.shards:
        return

    def order(row_key: tuple) -> tuple:
        task, passage = row_key[0], int(row_key[1])
        methods = rank_of["methods"]
        method = methods.get(row_key[2], len(methods)) if len(row_key) > 2 else 0
        return (passage, rank_of["tasks"].get(task, len(rank_of["tasks"])), method)

    lines = [collected.lines[k] for k in sorted(collected.lines, key=order)]
    write_atomic(output / collected.name, ",".join(collected.header) + "\n" + "".join(lines))
    for shard in collected.shards:
        shard.unlink()


def _missing(
    record: dict[str, Any], rows: _Collected, skipped: _Collected
) -> dict[int, list[tuple[str, int]]]:
    """Rank -> its passages (task, index) that lack a row for one of the run's methods and were
    not skipped as unusable; empty when shards.json does not record the passage counts."""
    counts = record.get("passages")
    if not isinstance(counts, dict):
        return {}
    done: dict[tuple[str, int], set[str]] = {}
    for task, passage, method in rows.lines:
        done.setdefault((task, int(passage)), set()).add(method)
    unusable = {(task, int(passage)) for task, passage in skipped.lines}
    order = run_order({task: range(int(n)) for task, n in counts.items()})
    missing = {}
    for rank in range(int(record["world_size"])):
        lacking = [
            (task, index)
            for task, index in Shard(rank, int(record["world_size"])).take(order)
            if (task, index) not in unusable
            and not set(record["methods"]) <= done.get((task, index), set())
        ]
        if lacking:
            missing[rank] = lacking
    return missing


def describe_missing(missing: Mapping[int, Sequence[tuple[str, int]]]) -> str:
    """``rank 1 lacks lambada passages 3, 5; rank 2 lacks ...`` (one line)."""
    parts = []
    for rank, passages in sorted(missing.items()):
        by_task: dict[str, list[int]] = {}
        for task, index in passages:
            by_task.setdefault(task, []).append(index)
        named = ", ".join(
            f"{task} passage{'s' if len(indices) > 1 else ''} "
            f"{', '.join(str(index) for index in indices)}"
            for task, indices in by_task.items()
        )
        parts.append(f"rank {rank} lacks {named}")
    return "; ".join(parts)


def merge_shards(
    output: str | Path, *, allow_partial: bool = False
) -> dict[int, list[tuple[str, int]]]:
    """Merges every rank's files in `output` into per_passage.csv and skipped.csv (see the
    module docstring); nothing to do when there are no shard files.

    Before writing, every rank's passages (from the counts in shards.json) are checked to have
    a row for each of the run's methods, or to be skipped as unusable.

    Args:
        allow_partial: merge even when some passages are missing; run.json then records the
            merge as partial (``"merge": {"partial": true, "missing": ...}``). A later complete
            merge removes that entry.

    Returns:
        Rank -> the passages (task, index) it lacks; empty after a complete merge.

    Raises:
        RunDirectoryError: passages are missing and `allow_partial` is False (the message names
            them per rank; nothing is written), another run holds the directory, or a shard
            file has another header.
    """
    output = Path(output)
    record = read_json(output / SHARDS)
    if record is None:
        raise RunDirectoryError(f"{output} has no {SHARDS}; it does not hold a sharded run")
    rank_of = {
        "tasks": {task: i for i, task in enumerate(record["tasks"])},
        "methods": {method: i for i, method in enumerate(record["methods"])},
    }
    with exclusive_lock(output):  # no rank still appending, no one-process run
        rows = _collect(output, PER_PASSAGE, ("task", "passage", "method"))
        skipped = _collect(output, SKIPPED, ("task", "passage"))
        if not rows.shards and not skipped.shards:
            return {}
        missing = _missing(record, rows, skipped)
        if missing and not allow_partial:
            raise RunDirectoryError(
                f"{output}: the shards are not finished: {describe_missing(missing)}; resume "
                "those ranks (the same command with the same RANK and WORLD_SIZE), or pass "
                "--allow-partial to merge what is there (run.json then records the merge as "
                "partial); nothing was merged"
            )
        with explained_write_errors(output):
            _write(output, rows, rank_of)
            _write(output, skipped, rank_of)
            _record_merge(output, missing)
    return missing


def _record_merge(output: Path, missing: Mapping[int, Sequence[tuple[str, int]]]) -> None:
    """Marks run.json's merge as partial (naming what is missing), or removes the mark."""
    config = read_json(output / RUN_CONFIG)
    if not isinstance(config, dict):
        return
    updated = {key: value for key, value in config.items() if key != MERGE_ENTRY}
    if missing:
        updated[MERGE_ENTRY] = {
            "partial": True,
            "missing": {
                f"rank{rank}": [f"{task} {index}" for task, index in passages]
                for rank, passages in sorted(missing.items())
            },
        }
    if updated != config:
        write_atomic(output / RUN_CONFIG, json.dumps(updated, indent=1) + "\n")


def wait_for_all_ranks() -> bool:
    """A barrier across the ranks when torch.distributed is initialised; False otherwise (then
    rank 0 cannot know when the others finish, and the merge is left to ``--merge``)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.barrier()
    return True


__all__ = [
    "SHARDS",
    "Shard",
    "describe_missing",
    "merge_shards",
    "wait_for_all_ranks",
    "write_order",
]
