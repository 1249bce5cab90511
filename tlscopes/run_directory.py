"""The files of a resumable evaluation run (:mod:`tlscopes.evaluate`): atomic writes, the
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

LOCK_FILE = ".lock"
# errno values meaning "this directory or file may not be written by us".
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


class RunDirectoryError(RuntimeError):
    """A run directory that cannot be used as it is (locked, an unreadable file, a bad header)."""


def is_not_writable(error: OSError) -> bool:
    return error.errno in NOT_WRITABLE


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
def exclusive_lock(directory: Path) -> Iterator[None]:
    """Holds an exclusive lock on `directory` for the duration of the block.

    A directory we may not write to is locked through an existing lock file opened read-only
    (``flock`` needs no write access), or not at all if it has none: nothing can be written
    there by this run anyway.

    Raises:
        RunDirectoryError: another process holds the lock.
    """
    path = directory / LOCK_FILE
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
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
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
