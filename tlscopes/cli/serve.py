"""``tlscopes serve``: the live local app (:mod:`tlscopes.app.ui`, on Gradio) on one shared
model, with the SAEs given by ``--sae`` for its features view. Gradio comes with the
``tlscopes[app]`` extra; without it the command says so."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import NoReturn

from tlscopes.cli.common import UsageError, add_model_arguments, load_with_message, positive_int

# tlscopes.app.explorer_app's defaults, here so that --help imports no torch (the CLI tests
# check that they agree).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_TOKENS = 512
SHIPPED_MODELS = ("smollm2-135m", "gemma3-270m")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}: this machine only)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0: a free one)",
    )
    parser.add_argument(
        "--max-tokens",
        type=positive_int,
        default=DEFAULT_MAX_TOKENS,
        help=f"the longest text, in tokens, explained at one position and for SAE features "
        f"(default {DEFAULT_MAX_TOKENS}); up to the model's context, e.g. 8192 for SmolLM2: "
        "each request is one forward and one backward pass over the text, checkpointed where "
        "memory needs it. Exploring every position keeps its own, smaller limit",
    )
    parser.add_argument(
        "--sae",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="an SAE folder (Gemma Scope 2, sparsify or SAELens; see tlscopes features) for the "
        "page's SAE features view, loaded on first use; repeat for several",
    )
    add_model_arguments(parser)


def sae_names(paths: list[Path]) -> dict[str, Path]:
    """Each SAE folder under a name for the page: its folder's name, or the whole path where
    two folders share a name."""
    names = [path.name or str(path) for path in paths]
    return {
        name if names.count(name) == 1 else str(path): path
        for name, path in zip(names, paths, strict=True)
    }


def wait_until_interrupted() -> None:
    """Blocks until Ctrl-C (the app serves from its own threads meanwhile)."""
    threading.Event().wait()


def end_process(status: int) -> NoReturn:
    """Ends the process at once with `status`, output flushed. After Ctrl-C the server is
    already closed and its files removed; the interpreter's own teardown of torch, Gradio and
    the model takes seconds and would only delay the exit, and a request still computing in a
    worker thread is cancelled with the process."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run_serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    from tlscopes.app.explorer_app import ExplorerApp
    from tlscopes.app.ui import INSTALL_HINT, gradio_installed, start, stop

    if not gradio_installed():
        raise UsageError(INSTALL_HINT)
    missing = [str(path) for path in args.sae if not path.is_dir()]
    if missing:
        raise UsageError(f"--sae {missing[0]} is not a folder; pass an SAE's folder")
    from tlscopes.models.loading import load_model
    from tlscopes.sae.formats import load_sae

    loaded = load_with_message(args)
    loaders = {
        name: (lambda name=name: load_model(name, kind=args.kind)) for name in SHIPPED_MODELS
    }
    loaders[args.model] = lambda: loaded
    saes = {name: (lambda path=path: load_sae(path)) for name, path in sae_names(args.sae).items()}
    with tempfile.TemporaryDirectory(prefix="tlscopes-app-") as files:
        app = ExplorerApp(loaders, default=args.model, max_tokens=args.max_tokens, saes=saes)
        page = start(app, args.host, args.port, directory=files)
        print(f"serving on {page.local_url} (Ctrl-C stops)", file=sys.stderr, flush=True)
        try:
            wait_until_interrupted()
        except KeyboardInterrupt:
            print("stopping", file=sys.stderr, flush=True)
        finally:
            stop(page)
    end_process(0)
    return 0  # reached only where end_process is replaced (in-process tests)
