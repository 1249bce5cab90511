"""``tlscopes serve``: the live local app (:mod:`tlscopes.app.ui`, on Gradio) on one shared
model. Gradio comes with the ``tlscopes[app]`` extra; without it the command says so."""

from __future__ import annotations

import argparse
import sys
import threading

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


def run_serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    from tlscopes.app.explorer_app import ExplorerApp
    from tlscopes.app.ui import INSTALL_HINT, gradio_installed, start

    if not gradio_installed():
        raise UsageError(INSTALL_HINT)
    from tlscopes.models.loading import load_model

    loaded = load_with_message(args)
    loaders = {
        name: (lambda name=name: load_model(name, kind=args.kind)) for name in SHIPPED_MODELS
    }
    loaders[args.model] = lambda: loaded
    page = start(ExplorerApp(loaders, default=args.model), args.host, args.port)
    print(f"serving on {page.local_url} (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        wait_until_interrupted()
    except KeyboardInterrupt:
        pass
    finally:
        page.close()
    return 0
