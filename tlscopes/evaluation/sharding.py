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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tlscopes.evaluation.run_directory import (
    PER_PASSAGE,
    SKIPPED,
    SKIPPED_COLUMNS,
    SKIPPED_PARSERS,
    RunDirectoryError,
    _header_of,
    _parsers,
    exclusive_lock,
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


def write_order(output: Path, world_size: int, tasks: Sequence[str], methods: Sequence[str]):
    """Records what the merge orders by (every rank writes the same content, atomically)."""
    record = {"world_size": world_size, "tasks": list(tasks), "methods": list(methods)}
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


def _merge(output: Path, name: str, key: Sequence[str], rank_of: dict[str, dict[str, int]]):
    target = output / name
    shards = sorted(output.glob(name.replace(".csv", ".rank*.csv")))
    sources = ([target] if target.exists() else []) + shards
    if not shards:
        return
    header = _header_of(sources[0]) if name == PER_PASSAGE else SKIPPED_COLUMNS
    for source in sources:
        if _header_of(source) != list(header):
            raise RunDirectoryError(f"{source} has another header than {sources[0]}; not merged")
    seen: dict[tuple, str] = {}
    for source in sources:
        for row_key, line in _lines(source, header, key):
            seen.setdefault(row_key, line)

    def order(row_key: tuple) -> tuple:
        task, passage = row_key[0], int(row_key[1])
        method = rank_of["methods"].get(row_key[2], len(rank_of["methods"])) if len(key) > 2 else 0
        return (passage, rank_of["tasks"].get(task, len(rank_of["tasks"])), method)

    lines = [seen[k] for k in sorted(seen, key=order)]
    write_atomic(target, ",".join(header) + "\n" + "".join(lines))
    for shard in shards:
        shard.unlink()


def merge_shards(output: str | Path) -> None:
    """Merges every rank's files in `output` into per_passage.csv and skipped.csv (see the
    module docstring); nothing to do when there are no shard files."""
    output = Path(output)
    record = read_json(output / SHARDS)
    if record is None:
        raise RunDirectoryError(f"{output} has no {SHARDS}; it does not hold a sharded run")
    rank_of = {
        "tasks": {task: i for i, task in enumerate(record["tasks"])},
        "methods": {method: i for i, method in enumerate(record["methods"])},
    }
    with exclusive_lock(output):  # no rank still appending, no one-process run
        _merge(output, PER_PASSAGE, ("task", "passage", "method"), rank_of)
        _merge(output, SKIPPED, ("task", "passage"), rank_of)


def wait_for_all_ranks() -> bool:
    """A barrier across the ranks when torch.distributed is initialised; False otherwise (then
    rank 0 cannot know when the others finish, and the merge is left to ``--merge``)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.barrier()
    return True


__all__ = ["SHARDS", "Shard", "merge_shards", "wait_for_all_ranks", "write_order"]
