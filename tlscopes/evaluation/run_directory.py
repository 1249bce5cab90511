"""The files of a resumable evaluation run (:mod:`tlscopes.evaluation.runner`): atomic writes, the
directory lock, and CSV rows read back with damaged lines dropped.

A run directory holds small files that later runs read back: a JSON record of the settings and
CSV files that grow by one flushed write per passage. These helpers keep them usable after a
full disk, a kill or a second run started on the same directory:

- :func:`write_atomic` writes a whole file through a temporary file in the same directory
  (flushed, fsynced, then renamed over the target), so a reader sees the old or the new file,
  never an empty or half-written one.
- :func:`exclusive_lock` holds ``fcntl.flock`` on ``<directory>/.lock`` for a run; a second run
  on the same directory is refused at once instead of computing and appending the same rows.
  The lock file stays behind (removing it would race with a run taking it); it is empty.
- :func:`read_rows` reads a CSV file back: a last line without its newline (the passage an
  interruption cut short) is left out, and a damaged line (wrong number of fields, a field that
  does not parse, a key already seen) is dropped with a warning naming the file and line.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tlscopes.evaluation.aopc_arithmetic import fraction_label

LOCK_FILE = ".lock"
# errno values meaning "this directory or file may not be written by us".
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


class RunDirectoryError(RuntimeError):
    """A run directory that cannot be used as it is (locked, an unreadable file, a bad header)."""


# errno values meaning "the disk (or this user's quota) is full".
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_not_writable(error: OSError) -> bool:
    return error.errno in NOT_WRITABLE


@contextlib.contextmanager
def explained_write_errors(directory: Path) -> Iterator[None]:
    """Turns a full disk or a directory we may not write to into one RunDirectoryError naming
    the directory and the cause (not a temporary file's name). Every write here is a flushed
    append or an atomic replace, so what was written before the error is kept.

    Raises:
        RunDirectoryError: an OSError for a full disk, a read-only file system or a missing
            permission was raised inside the block.
    """
    try:
        yield
    except OSError as error:
        if error.errno in DISK_FULL:
            cause, remedy = "the disk is full", "free some space"
        elif is_not_writable(error):
            cause, remedy = "it is not writable", "make it writable"
        else:
            raise
        raise RunDirectoryError(
            f"cannot write to {directory}: {cause} ({os.strerror(error.errno)}); the results "
            f"already written there are kept, and the same command resumes from them once you "
            f"{remedy}, or choose another --output directory"
        ) from error


def write_atomic(path: Path, text: str) -> None:
    """Replaces `path` with `text` all at once: a temporary file in the same directory, flushed
    and fsynced, then renamed over `path`. If anything fails (a full disk), `path` is unchanged
    and the temporary file is removed."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(descriptor, 0o644)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_json(path: Path) -> Any:
    """The JSON value in `path`, None if there is no such file; an error naming the file if it
    cannot be read as JSON."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunDirectoryError(
            f"{path} is not valid JSON ({error}); a full disk or a crash may have cut it short. "
            f"Delete {path} if the results beside it were computed with the settings you run "
            "now (it is written again), or choose another --output directory"
        ) from error


@contextlib.contextmanager
def exclusive_lock(
    directory: Path, name: str = LOCK_FILE, *, shared: bool = False
) -> Iterator[None]:
    """Holds an exclusive lock on `directory` for the duration of the block.

    `shared` takes it shared instead: the ranks of one sharded run share ``.lock`` (each holds
    its own ``.lock.rank<r>`` exclusively), which keeps out a one-process run and a merge.

    A directory we may not write to is locked through an existing lock file opened read-only
    (``flock`` needs no write access), or not at all if it has none: nothing can be written
    there by this run anyway.

    Raises:
        RunDirectoryError: another process holds the lock.
    """
    path = directory / name
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        if not is_not_writable(error):
            raise
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            yield
            return
    try:
        try:
            fcntl.flock(descriptor, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirectoryError(
                f"another run is writing to {directory} (it holds the lock {path}); wait for "
                "it to finish, or choose another --output directory"
            ) from None
        yield
    finally:
        os.close(descriptor)


def parse_int(value: str) -> None:
    int(value)


def parse_float(value: str) -> None:
    float(value)


def parse_text(value: str) -> None:
    if not value:
        raise ValueError("empty")


def parse_any(value: str) -> None:
    """Any value, the empty string included."""


def optional(parse: Callable[[str], None]) -> Callable[[str], None]:
    def parse_optional(value: str) -> None:
        if value != "":
            parse(value)

    return parse_optional


@dataclass(frozen=True)
class Rows:
    """A CSV file as read back by :func:`read_rows`.

    Attributes:
        frame: the good rows (keep_default_na=False, so empty fields are "").
        text: the header and the good lines, exactly as written.
        dropped: how many lines were left out (damaged, repeated, or cut off at the end).
    """

    frame: pd.DataFrame
    text: str
    dropped: int


def read_rows(
    path: Path,
    header: Sequence[str],
    parsers: dict[str, Callable[[str], None]],
    key: Sequence[str],
    *,
    text_columns: Sequence[str] = (),
    warn: bool = True,
) -> Rows | None:
    """The rows of a CSV file written one line per row; None if it is missing or empty.

    A file whose header was cut short reads as no rows (``text`` empty, one line dropped).

    Args:
        header: the columns the first line must name, in order.
        parsers: column -> a function raising ValueError for a value that column cannot hold
            (one per header column).
        key: columns naming a row; a later line with a key already seen is dropped.
        text_columns: columns read as strings even where every value looks like a number (a
            hash such as "0123456789ab" must not become a number).
        warn: warn about each damaged line (``warnings.warn``, naming the file and line).
    """
    if not path.exists():
        return None
    data = path.read_bytes().decode("utf-8", errors="replace")
    lines = data.splitlines(keepends=True)
    # A last line without its newline is the write an interruption cut short: left out quietly.
    cut_off = 1 if lines and not lines[-1].endswith("\n") else 0
    lines = lines[: len(lines) - cut_off]
    if not lines:  # empty, or a header cut short: rewritten empty, so appends start afresh
        return Rows(pd.DataFrame(columns=list(header)), "", cut_off) if cut_off else None
    found = next(csv.reader([lines[0]]), [])
    if found != list(header):
        raise RunDirectoryError(
            f"{path} line 1 is {lines[0].rstrip()!r}, not the header {','.join(header)}; it "
            "does not hold rows of this run. Move it away (its passages are then computed "
            "again), or choose another --output directory"
        )
    kept = [lines[0]]
    seen: dict[tuple[str, ...], int] = {}
    dropped = cut_off
    for number, line in enumerate(lines[1:], start=2):
        problem = _problem(line, header, parsers)
        if problem is None:
            fields = dict(zip(header, next(csv.reader([line])), strict=True))
            name = tuple(fields[column] for column in key)
            if name in seen:
                problem = f"it repeats the row of line {seen[name]}"
            else:
                seen[name] = number
        if problem is not None:
            dropped += 1
            if warn:
                warnings.warn(
                    f"{path} line {number} dropped: {problem} ({line.rstrip()[:80]!r}); its "
                    "passage counts as not computed",
                    stacklevel=3,
                )
            continue
        kept.append(line)
    text = "".join(kept)
    dtypes = dict.fromkeys(text_columns, str)
    frame = pd.read_csv(io.StringIO(text), keep_default_na=False, dtype=dtypes)
    return Rows(frame, text, dropped)


def _problem(
    line: str, header: Sequence[str], parsers: dict[str, Callable[[str], None]]
) -> str | None:
    """Why a data line cannot be used, or None if it can."""
    try:
        fields = next(csv.reader([line]), [])
    except csv.Error as error:
        return f"not a CSV line ({error})"
    if len(fields) != len(header):
        return f"{len(fields)} fields, not {len(header)}"
    for column, value in zip(header, fields, strict=True):
        try:
            parsers[column](value)
        except ValueError:
            return f"{column} is {value!r}"
    return None


# The AOPC run directory's files -----------------------------------------------------------

PER_PASSAGE = "per_passage.csv"
SUMMARY = "aopc.csv"
ALIGNED_SUMMARY = "aopc_target_aligned.csv"
RUN_CONFIG = "run.json"
SKIPPED = "skipped.csv"


# Columns after the paper protocol's, in this order, present only in runs that compute them.
OPTIONAL_COLUMNS = (
    "prediction_id",
    "comprehensiveness",
    "sufficiency",
    "loo_spearman",
    "loo_kendall",
)


def columns(fractions: Sequence[float], extra: Sequence[str] = ()) -> list[str]:
    """per_passage.csv's header; `extra` names optional columns (:data:`OPTIONAL_COLUMNS`),
    e.g. ``prediction_id`` under the authors' protocol."""
    head = ["task", "passage", "method", "text_sha", "n_tokens", "n_context", "target_id", "logp"]
    for fraction in fractions:
        head += [f"n_ablated_{fraction_label(fraction)}", f"delta_{fraction_label(fraction)}"]
    return (
        head
        + ["aopc", "n_steps", "completeness_gap", "seed"]
        + [column for column in OPTIONAL_COLUMNS if column in extra]
    )


# Read back as strings: a task named "2017" or a hash of digits only stays what it was.
TEXT_COLUMNS = ("task", "method", "text_sha", "reason")


def _parsers(header: Sequence[str]) -> dict[str, Callable[[str], None]]:
    """What each per_passage.csv column must hold for its row to count as finished."""
    kinds: dict[str, Callable[[str], None]] = {
        "task": parse_any,
        "method": parse_text,
        "text_sha": parse_text,
        "n_steps": optional(parse_int),
        "completeness_gap": optional(parse_float),
        "seed": optional(parse_int),
        # Empty on passages past --loo-limit; NaN where a ranking is constant.
        "loo_spearman": optional(parse_float),
        "loo_kendall": optional(parse_float),
    }
    for column in header:
        if column not in kinds:
            is_count = column in ("passage", "n_tokens", "n_context", "target_id", "prediction_id")
            is_count |= column.startswith("n_ablated_")
            kinds[column] = parse_int if is_count else parse_float
    return kinds


def _header_of(path: Path) -> list[str]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        return next(csv.reader([handle.readline()]), [])


def _fractions_of(path: Path) -> list[str]:
    """The delta_<k> columns named in a per_passage.csv header, as <k> labels."""
    first = _header_of(path)
    return [column.removeprefix("delta_") for column in first if column.startswith("delta_")]


def _read_per_passage(path: Path, header: list[str], *, warn: bool = True) -> Rows | None:
    key = ["task", "passage", "method"]
    return read_rows(path, header, _parsers(header), key, text_columns=TEXT_COLUMNS, warn=warn)


def read_finished(path: str | Path) -> pd.DataFrame | None:
    """The usable rows of a per_passage.csv; None if it is missing or empty. Reads only.

    A last line cut off by an interruption is left out; a damaged line (a wrong number of
    fields, a value that does not parse, a (task, passage, method) already seen) is left out
    with a warning naming the file and line. :func:`run_evaluation` removes such lines from the
    file and computes those passages again.
    """
    path = Path(path)
    if not path.exists():
        return None
    header = columns([float(label) for label in _fractions_of(path)], _header_of(path))
    rows = _read_per_passage(path, header)
    return None if rows is None else rows.frame


SKIPPED_COLUMNS = ["task", "passage", "text_sha", "reason"]
SKIPPED_PARSERS = {
    "task": parse_any,
    "passage": parse_int,
    "text_sha": parse_text,
    "reason": parse_any,
}


def _read_skipped(path: Path) -> Rows | None:
    key = ["task", "passage"]
    return read_rows(path, SKIPPED_COLUMNS, SKIPPED_PARSERS, key, text_columns=TEXT_COLUMNS)


# run.json's entry about a merge of a sharded run (tlscopes.evaluation.sharding); not a setting.
MERGE_ENTRY = "merge"


def _check_config(output: Path, record: dict[str, Any]) -> None:
    path = output / RUN_CONFIG
    previous = read_json(path)
    if isinstance(previous, dict):
        previous = {key: value for key, value in previous.items() if key != MERGE_ENTRY}
    if previous is None:
        write_atomic(path, json.dumps(record, indent=1) + "\n")
    elif not isinstance(previous, dict):
        raise RunDirectoryError(
            f"{path} holds {type(previous).__name__}, not a run's settings; delete it if the "
            "results beside it were computed with the settings you run now, or choose another "
            "--output directory"
        )
    elif previous != record:
        raise ValueError(
            f"{output} holds a run with different settings ({previous}, now {record}); "
            "resume with the same settings or choose another --output directory"
        )


def _append(path: Path, header: list[str], rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    if not path.exists() or path.stat().st_size == 0:
        writer.writeheader()
    writer.writerows(rows)
    # One write per passage, flushed to disk: an interruption loses at most the passage in
    # progress, and a half-written last line is left out on resume (`read_finished`).
    with path.open("a", encoding="utf-8") as handle:
        handle.write(buffer.getvalue())
        handle.flush()
        os.fsync(handle.fileno())


def _rewrite(path: Path, rows: Rows | None) -> None:
    """Rewrites a CSV file without the lines reading it left out, so appends start on a clean
    line and the warnings are not repeated. A directory we may not write to is left as it is
    (the lines are left out when reading)."""
    if rows is None or rows.dropped == 0:
        return
    try:
        write_atomic(path, rows.text)
    except OSError as error:
        if not is_not_writable(error):
            raise
