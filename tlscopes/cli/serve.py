"""``tlscopes serve``: the live local app (:mod:`tlscopes.app`) on one shared model."""

from __future__ import annotations

import argparse
import sys

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
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    add_model_arguments(parser)


def run_serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    from tlscopes.app import ExplorerApp, make_server
    from tlscopes.models import load_model

    loaded = load_with_message(args)
    loaders = {
        name: (lambda name=name: load_model(name, kind=args.kind)) for name in SHIPPED_MODELS
    }
    loaders[args.model] = lambda: loaded
    app = ExplorerApp(loaders, default=args.model)
    server = make_server(app, args.host, args.port)
    host, port = server.server_address[:2]
    print(f"serving on http://{host}:{port}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
