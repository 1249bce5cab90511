"""A live local app: type a text, pick a scope, see what explains the prediction.

A small server on the standard library's ``http.server`` (no dependencies beyond tlscopes):
``GET /`` is the page, ``POST /api/attribute`` explains one position with one scope and
``POST /api/explore`` every position with the three scopes. Both answer with the explorer's
JSON payload (:mod:`tlscopes.explorer_data`), which the page renders with the same script as the
offline explorer file, plus the result as a JSON file and as an offline HTML page to download.

One model object serves every request: requests run in their own threads and the library's
per-model lock serialises the passes on one model, so results never mix. Bad input (an empty
text, a text over the limit, a target that splits into several tokens, an unknown scope or
model) is answered with status 400 and a one-line message that the page shows.
"""

from __future__ import annotations

import html
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import fields
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tlscopes import attribution_file
from tlscopes.attribute import attribute
from tlscopes.explorer import DEFAULT_SCOPES, explore_payload, scope_from_name
from tlscopes.explorer_data import matrix_payload
from tlscopes.explorer_page import asset, explorer_html, scripts_markup
from tlscopes.protocols import TransformerLensModel
from tlscopes.scopes import SemanticScope
from tlscopes.viz import script_json

logger = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
MAX_TOKENS = 512
# Every position with three scopes costs three matrices; kept to what answers in seconds.
MAX_EXPLORE_TOKENS = 256
MAX_BODY_BYTES = 1_000_000
EXAMPLES = ("The capital of France is", "29,30,45,61,70,66,52,38,31,35,47,60,")
# Errors that mean the request was wrong: the page shows their message.
REQUEST_ERRORS = (ValueError, TypeError, KeyError, IndexError)

ModelLoader = Callable[[], TransformerLensModel]


class RequestError(ValueError):
    """A request the app cannot answer, with the message the page shows."""


class ExplorerApp:
    """The app's logic without the server: requests in, explorer payloads out.

    Args:
        models: model name -> a function that loads it (called once, on the first request
            that names it; ``lambda: model`` for a model already loaded).
        default: the model used when a request names none (default: the first).
        max_tokens, max_explore_tokens: the longest text explained at one position / at every
            position.
    """

    def __init__(
        self,
        models: Mapping[str, ModelLoader],
        *,
        default: str | None = None,
        max_tokens: int = MAX_TOKENS,
        max_explore_tokens: int = MAX_EXPLORE_TOKENS,
    ) -> None:
        if not models:
            raise ValueError("pass at least one model")
        self.sources = dict(models)
        self.default = default or next(iter(self.sources))
        if self.default not in self.sources:
            raise ValueError(f"default model {self.default!r} is not one of {list(self.sources)}")
        self.max_tokens = max_tokens
        self.max_explore_tokens = max_explore_tokens
        self._loaded: dict[str, TransformerLensModel] = {}
        self._load_lock = threading.Lock()

    @property
    def model_names(self) -> list[str]:
        return list(self.sources)

    def model(self, name: str | None) -> TransformerLensModel:
        """The named model, loaded once (a load is not repeated by concurrent requests)."""
        name = name or self.default
        if name not in self.sources:
            raise RequestError(f"unknown model {name!r}; choose from {', '.join(self.sources)}")
        with self._load_lock:
            if name not in self._loaded:
                self._loaded[name] = self.sources[name]()
            return self._loaded[name]

    def _text(self, request: Mapping[str, Any], model: TransformerLensModel, limit: int) -> str:
        text = request.get("text")
        if not isinstance(text, str) or not text.strip():
            raise RequestError("The text is empty: type a prompt or a comma-separated series.")
        length = int(model.to_tokens(text).shape[-1])
        if length > limit:
            raise RequestError(
                f"The text is {length} tokens; this view explains at most {limit}. Shorten it."
            )
        return text

    def attribute(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """One scope at one position: {"payload", "file" (the Attribution as JSON), "html"}."""
        model = self.model(request.get("model"))
        text = self._text(request, model, self.max_tokens)
        name = request.get("scope") or "fisher"
        if name not in DEFAULT_SCOPES:
            raise RequestError(f"unknown scope {name!r}; choose from {', '.join(DEFAULT_SCOPES)}")
        target = request.get("target") or None
        if target is not None and name != "semantic":
            raise RequestError(f"A target is for the semantic scope, not {name}; clear it.")
        if name == "semantic":
            scope = SemanticScope(None if target is None else parse_target(target))
        else:
            scope = scope_from_name(name)
        position = parse_position(request.get("position"))
        result = attribute(model, text, scope, position=position)
        payload = matrix_payload([result], text=text, title=f"{name} scope on {model_label(model)}")
        saved = attribution_file.encode(
            {item.name: getattr(result, item.name) for item in fields(result)}
        )
        return {"payload": payload, "file": saved, "html": explorer_html(payload)}

    def explore(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Every position with the three scopes: {"payload", "html"}."""
        model = self.model(request.get("model"))
        text = self._text(request, model, self.max_explore_tokens)
        title = f"every position, three scopes, on {model_label(model)}"
        payload = explore_payload(model, text, DEFAULT_SCOPES, title=title)
        return {"payload": payload, "html": explorer_html(payload)}


def parse_target(target: Any) -> int | str:
    """A token id (digits) or the token's text, as typed; spaces are kept (" Paris")."""
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    if not isinstance(target, str):
        raise RequestError(f"the target must be text or a token id, got {target!r}")
    return target


def parse_position(position: Any) -> int:
    """The explained position: an integer, negative from the end; empty means the last."""
    if position is None or position == "":
        return -1
    try:
        return int(position)
    except (TypeError, ValueError):
        raise RequestError(
            f"The position must be an integer such as -1, got {position!r}."
        ) from None


def model_label(model: TransformerLensModel) -> str:
    return str(getattr(model.cfg, "model_name", "") or type(model).__name__)


def app_page(app: ExplorerApp) -> str:
    """The app's page: a form, the explorer's script and style (inlined) and the app's script."""
    options = "".join(
        f'<option value="{html.escape(name)}">{html.escape(name)}</option>'
        for name in app.model_names
    )
    scopes = "".join(f'<option value="{name}">{name}</option>' for name in DEFAULT_SCOPES)
    config = script_json({"examples": list(EXAMPLES), "default": app.default})
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>tlscopes app</title>'
        f"<style>{asset('app.css')}</style></head><body><h1>tlscopes: Jacobian Scopes</h1>"
        '<form id="ask" class="tla-form">'
        '<label class="tla-wide">text or comma-separated number series '
        '<textarea id="text" rows="3"></textarea></label>'
        f'<label>scope <select id="scope">{scopes}</select></label>'
        "<label>target (semantic; one token, empty: the top prediction) "
        '<input id="target" type="text" size="12"></label>'
        '<label>position <input id="position" type="text" size="5" value="-1"></label>'
        f'<label>model <select id="model">{options}</select></label>'
        '<button id="run" type="submit">explain</button>'
        '<button id="explore-all" type="button">explore every position</button>'
        '<span id="examples"></span></form>'
        '<div id="message" role="status"></div>'
        '<div id="downloads"><a id="download-json" download="attribution.json">download JSON</a>'
        ' <a id="download-html" download="explorer.html">download HTML</a></div>'
        f'<div id="result"></div><script type="application/json" id="app-config">{config}'
        f"</script>{scripts_markup()}<script>{asset('app.js')}</script></body></html>"
    )


class _Handler(BaseHTTPRequestHandler):
    app: ExplorerApp
    page: str

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        logger.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: str, content_type: str) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.split("?")[0] in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.page, "text/html")
        else:
            self._send(HTTPStatus.NOT_FOUND, json.dumps({"error": "not found"}), "application/json")

    def do_POST(self) -> None:  # noqa: N802
        routes = {"/api/attribute": self.app.attribute, "/api/explore": self.app.explore}
        handler = routes.get(self.path)
        if handler is None:
            self._send(HTTPStatus.NOT_FOUND, json.dumps({"error": "not found"}), "application/json")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                raise RequestError(f"The request is over {MAX_BODY_BYTES:,} bytes.")
            request = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(request, dict):
                raise RequestError("The request must be a JSON object.")
            status, answer = HTTPStatus.OK, handler(request)
        except json.JSONDecodeError:
            status, answer = HTTPStatus.BAD_REQUEST, {"error": "The request is not JSON."}
        except REQUEST_ERRORS as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else error
            status, answer = HTTPStatus.BAD_REQUEST, {"error": str(message)}
        except Exception as error:  # the page gets a message; the traceback goes to the log
            logger.exception("request to %s failed", self.path)
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            answer = {"error": f"The server failed ({type(error).__name__}); see its log."}
        self._send(status, json.dumps(answer, allow_nan=False), "application/json")


def make_server(
    app: ExplorerApp, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> ThreadingHTTPServer:
    """A threaded server for `app` on host:port (port 0: a free port, see ``server_address``);
    call ``serve_forever()`` to run it and ``shutdown()`` to stop it."""
    handler = type("Handler", (_Handler,), {"app": app, "page": app_page(app)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ExplorerApp",
    "RequestError",
    "app_page",
    "make_server",
    "parse_position",
    "parse_target",
]
