"""``tlscopes serve``: the live local app (:mod:`tlscopes.app.ui`, on Gradio) on one shared
model. Gradio comes with the ``tlscopes[app]`` extra; without it the command says so."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
from typing import NoReturn

from tlscopes.cli.common import UsageError, add_model_arguments, load_with_message

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
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
    add_model_arguments(parser)


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
    from tlscopes.models.loading import load_model

    loaded = load_with_message(args)
    loaders = {
        name: (lambda name=name: load_model(name, kind=args.kind)) for name in SHIPPED_MODELS
    }
    loaders[args.model] = lambda: loaded
    with tempfile.TemporaryDirectory(prefix="tlscopes-app-") as files:
        page = start(
            ExplorerApp(loaders, default=args.model), args.host, args.port, directory=files
        )
        print(f"serving on {page.local_url} (Ctrl-C stops)", file=sys.stderr, flush=True)
        try:
            wait_until_interrupted()
        except KeyboardInterrupt:
            print("stopping", file=sys.stderr, flush=True)
        finally:
            stop(page)
    end_process(0)
    return 0  # reached only where end_process is replaced (in-process tests)
