"""The live app's page on Gradio (the ``tlscopes[app]`` extra): ``tlscopes serve``.

Type a text or a comma-separated number series, pick the scope (Fisher with its rank, or
Temperature, or Semantic with its target), the position and the model; the page shows the
tokens coloured by their scores, the prediction's top-k as bars and, for a number series, the
values with one influence bar each. *Explore every position* shows the offline explorer
(:mod:`tlscopes.app.explorer`) in a sandboxed frame. With SAEs configured (``tlscopes serve
--sae PATH``), *explain SAE features* shows the explorer with the features at the position
listed: click one to colour the tokens by it, then a token for the features it drives. Each
answer is offered as JSON and HTML files.

The logic is :class:`tlscopes.app.explorer_app.ExplorerApp`; :class:`AppHandlers` turns its answers into what
the page shows (plain values, no Gradio, so tests call them directly) and :func:`build_blocks`
wires them to Gradio components. Gradio is imported only inside :func:`build_blocks` and
:func:`start`, so ``import tlscopes`` and ``tlscopes --help`` never import it.

Offline: analytics off (``analytics_enabled=False`` and ``GRADIO_ANALYTICS_ENABLED=False``, which
also stops Gradio's version check), no share link, system fonts, no run history, no server-side
rendering; the page and everything it loads come from the app itself. One request runs on the
model at a time (a queue shared by the buttons); the others wait their turn.
"""

from __future__ import annotations

import html
import importlib.util
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlscopes.app.explorer_app import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    EXAMPLES,
    REQUEST_ERRORS,
    ExplorerApp,
    prediction_confidences,
    series_influence,
    token_highlights,
)
from tlscopes.core.scopes import SCOPE_NAMES

if TYPE_CHECKING:
    import gradio

logger = logging.getLogger(__name__)
INSTALL_HINT = 'the app needs Gradio: install it with pip install -e ".[app]" (or "tlscopes[app]")'
TOP_K = 10
QUEUE_SIZE = 64
KEPT_FILES = 32
FRAME_HEIGHT = 760
# The coloured tokens scroll inside their box past most of the window's height, so that with a
# long prompt (thousands of tokens) the prediction below them stays in reach.
TOKENS_HEIGHT = "60vh"
CSS = f"""
#tokens {{ max-height: {TOKENS_HEIGHT}; overflow-y: auto; }}
.tla-message {{ min-height: 1.4em; }}
.tla-message .tla-error {{ color: #a40000; font-weight: 600; }}
.tla-frame {{ width: 100%; height: {FRAME_HEIGHT}px; border: 1px solid #ddd; }}
"""


@dataclass(frozen=True)
class Answer:
    """What one request puts in the page; None leaves an output empty.

    Attributes:
        message: the status line (plain text; the page escapes it).
        error: whether the message reports bad input or a failure.
        highlights: (token, score scaled to 0..1 or None) per token.
        prediction: the top-k prediction, token -> probability.
        series: {"values", "influence"} for a number series.
        explorer: the explorer page (a whole HTML document) for the frame.
        files: paths of the files offered for download: "json", "html".
    """

    message: str
    error: bool = False
    highlights: list[tuple[str, float | None]] | None = None
    prediction: dict[str, float] | None = None
    series: dict[str, list[float | None]] | None = None
    explorer: str | None = None
    files: dict[str, str] = field(default_factory=dict)


def message_html(answer: Answer) -> str:
    """The status line as markup, its text escaped (it may quote the user's text)."""
    kind = "tla-error" if answer.error else "tla-done"
    role = "alert" if answer.error else "status"
    return f'<p class="{kind}" role="{role}">{html.escape(answer.message)}</p>'


def frame_html(page: str | None) -> str:
    """The explorer page in a sandboxed frame: scripts run, but in an origin of their own."""
    if page is None:
        return ""
    return (
        '<iframe class="tla-frame" title="explorer: every position" sandbox="allow-scripts" '
        f'srcdoc="{html.escape(page, quote=True)}"></iframe>'
    )


class AppHandlers:
    """The page's two actions on an :class:`ExplorerApp`, answering with :class:`Answer`.

    Bad input and failures are answers with ``error=True``, never exceptions: the page shows
    the message; an unexpected failure's traceback goes to the log only.

    Args:
        app: the logic (models, limits, checks).
        directory: where download files are written (default: a new temporary directory).
    """

    def __init__(self, app: ExplorerApp, directory: str | Path | None = None) -> None:
        self.app = app
        if directory is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="tlscopes-app-")
            directory = self._temporary.name
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._files_lock = threading.Lock()

    def _write(self, name: str, text: str) -> str:
        # One folder per file, so the download keeps its plain name. Gradio copies what it
        # serves into its own cache, so only the newest few are kept here.
        with self._files_lock:
            folders = sorted(self.directory.glob("answer-*"), key=lambda f: f.stat().st_mtime)
            for old in folders[: max(0, len(folders) - KEPT_FILES + 1)]:
                shutil.rmtree(old, ignore_errors=True)
            folder = self.directory / f"answer-{uuid.uuid4().hex}"
            # Not parents=True: once the server has stopped and removed the directory, a
            # request still finishing must not make it again.
            folder.mkdir()
        path = folder / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    def _answer(self, work: Any, request: dict[str, Any]) -> Answer:
        try:
            return work(request)
        except REQUEST_ERRORS as error:
            text = error.args[0] if isinstance(error, KeyError) and error.args else error
            return Answer(str(text), error=True)
        except Exception as error:  # the page gets a message; the traceback goes to the log
            logger.exception("the app failed on %r", request)
            return Answer(f"The app failed ({type(error).__name__}); see its log.", error=True)

    def explain(
        self,
        text: str | None,
        scope: str | None = "fisher",
        rank: float | None = None,
        target: str | None = None,
        position: float | str | None = -1,
        model: str | None = None,
    ) -> Answer:
        """One scope at one position. The target counts for the semantic scope only and the
        rank for the Fisher scope only (the page shows each field for its scope)."""
        request: dict[str, Any] = {"text": text, "scope": scope, "model": model}
        request["position"] = "" if position is None else str(position).strip()
        if scope == "semantic":
            request["target"] = target or None
        if scope == "fisher" and rank is not None:
            request["rank"] = rank
        return self._answer(self._explain, request)

    def _explain(self, request: dict[str, Any]) -> Answer:
        answer = self.app.attribute(request)
        payload = answer["payload"]
        scope = payload["scopes"][0]
        position = payload["positions"][0]
        said = f"Done: {payload['title']}, explaining the prediction after token {position} "
        said += f"{payload['tokens'][position]!r}"
        if scope["targets"]:
            said += f", target {scope['targets'][0]!r}"
        if payload["masked"]:
            said += " (the leading BOS, an attention sink, is left out of the colours)"
        return Answer(
            said + ".",
            highlights=token_highlights(payload),
            prediction=prediction_confidences(payload),
            series=series_influence(payload),
            files={
                "json": self._write("attribution.json", answer["file"]),
                "html": self._write("attribution.html", answer["html"]),
            },
        )

    def explore(self, text: str | None, model: str | None = None) -> Answer:
        """Every position with the three scopes, shown in the explorer."""
        return self._answer(self._explore, {"text": text, "model": model})

    def _explore(self, request: dict[str, Any]) -> Answer:
        answer = self.app.explore(request)
        payload = answer["payload"]
        return Answer(
            f"Done: {payload['title']}. Click a token to see what explains the prediction after it.",
            explorer=answer["html"],
            files={
                "json": self._write("explorer.json", json.dumps(payload, allow_nan=False)),
                "html": self._write("explorer.html", answer["html"]),
            },
        )

    def features(
        self,
        text: str | None,
        sae: str | None = None,
        features: str | None = "active",
        position: float | str | None = -1,
        model: str | None = None,
    ) -> Answer:
        """The SAE features at one position ("active" or comma-separated ids), shown in the
        explorer's features panel."""
        request: dict[str, Any] = {"text": text, "sae": sae, "features": features, "model": model}
        request["position"] = "" if position is None else str(position).strip()
        return self._answer(self._features, request)

    def _features(self, request: dict[str, Any]) -> Answer:
        answer = self.app.features(request)
        payload = answer["payload"]
        section = payload["features"]
        position = section["position"]
        said = f"Done: {payload['title']}, position {position} {payload['tokens'][position]!r}: "
        shown, total = len(section["items"]), section["total"]
        if total == 0:
            said += "no feature fires there."
        else:
            said += f"{total} feature{'s' if total != 1 else ''}"
            said += f" (the {shown} with the highest activation listed)" if shown < total else ""
            said += ". Click a feature to colour the tokens by it, then a token for the features "
            said += "it drives most."
        return Answer(
            said,
            explorer=answer["html"],
            files={
                "json": self._write("features.json", json.dumps(payload, allow_nan=False)),
                "html": self._write("features.html", answer["html"]),
            },
        )


def gradio_installed() -> bool:
    """Whether Gradio can be imported (it comes with the ``tlscopes[app]`` extra)."""
    return importlib.util.find_spec("gradio") is not None


def _require_gradio() -> Any:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return gradio


def _series_plot(series: dict[str, list[float | None]] | None) -> Any:
    if series is None:
        return None
    from tlscopes.views.plotting import series_figure

    return series_figure(series["values"], series["influence"], title="time series")


def build_blocks(handlers: AppHandlers) -> gradio.Blocks:
    """The page, wired to `handlers` (API names "explain" and "explore" for gradio_client, and
    "features" where the app has SAEs)."""
    gr = _require_gradio()
    app = handlers.app
    with gr.Blocks(
        title="tlscopes app", analytics_enabled=False, delete_cache=(3600, 3600)
    ) as page:
        gr.Markdown("# tlscopes: Jacobian Scopes\nWhich input tokens explain the prediction?")
        with gr.Row():
            text = gr.Textbox(
                label="text or comma-separated number series", lines=3, scale=3, elem_id="text"
            )
            with gr.Column(scale=2):
                scope = gr.Radio(list(SCOPE_NAMES), value="fisher", label="scope", elem_id="scope")
                rank = gr.Number(1, label="Fisher rank", precision=0, elem_id="rank")
                target = gr.Textbox(
                    label="target: one token (empty: the top prediction)",
                    visible=False,
                    elem_id="target",
                )
                with gr.Row():
                    position = gr.Number(-1, label="position", precision=0, elem_id="position")
                    model = gr.Dropdown(
                        app.model_names, value=app.default, label="model", elem_id="model"
                    )
        with gr.Row():
            explain = gr.Button("explain", variant="primary", elem_id="explain")
            explore = gr.Button("explore every position", elem_id="explore")
        if app.sae_names:
            with gr.Row():
                sae = gr.Dropdown(app.sae_names, value=app.sae_names[0], label="SAE", elem_id="sae")
                feature_ids = gr.Textbox(
                    "active",
                    label="features: 'active' or ids such as 12,407",
                    elem_id="feature-ids",
                )
                explain_features = gr.Button("explain SAE features", elem_id="features")
        gr.Examples([[example] for example in EXAMPLES], inputs=[text])
        message = gr.HTML(elem_classes="tla-message", elem_id="message", js_on_load=None)
        with gr.Tabs(selected="position") as tabs:
            with gr.Tab("this position", id="position"):
                tokens = gr.HighlightedText(label="tokens, coloured by score", elem_id="tokens")
                with gr.Row():
                    prediction = gr.Label(
                        num_top_classes=TOP_K, label="prediction", elem_id="prediction"
                    )
                    series = gr.Plot(label="time series", visible=False, elem_id="series")
            with gr.Tab("explorer: every position", id="explorer"):
                frame = gr.HTML(elem_id="explorer", js_on_load=None)
            if app.sae_names:
                with gr.Tab("SAE features", id="features"):
                    feature_frame = gr.HTML(elem_id="features-explorer", js_on_load=None)
        with gr.Row():
            json_file = gr.DownloadButton("download JSON", visible=False, elem_id="download-json")
            html_file = gr.DownloadButton("download HTML", visible=False, elem_id="download-html")

        def show(answer: Answer, tab: str) -> tuple:
            downloads = [
                gr.DownloadButton(value=answer.files.get(kind), visible=kind in answer.files)
                for kind in ("json", "html")
            ]
            # The explorer page goes to the frame of the answer's tab; the other frame empties.
            frames = [frame_html(answer.explorer if tab != "features" else None)]
            if app.sae_names:
                frames.append(frame_html(answer.explorer if tab == "features" else None))
            return (
                message_html(answer),
                answer.highlights,
                answer.prediction,
                gr.Plot(value=_series_plot(answer.series), visible=answer.series is not None),
                *frames,
                *downloads,
                gr.Tabs(selected=tab),
            )

        frames = [frame, feature_frame] if app.sae_names else [frame]
        outputs = [message, tokens, prediction, series, *frames, json_file, html_file, tabs]
        shared = {"outputs": outputs, "concurrency_limit": 1, "concurrency_id": "model"}
        explain.click(
            lambda *values: show(handlers.explain(*values), "position"),
            inputs=[text, scope, rank, target, position, model],
            api_name="explain",
            **shared,
        )
        explore.click(
            lambda *values: show(handlers.explore(*values), "explorer"),
            inputs=[text, model],
            api_name="explore",
            **shared,
        )
        if app.sae_names:
            explain_features.click(
                lambda *values: show(handlers.features(*values), "features"),
                inputs=[text, sae, feature_ids, position, model],
                api_name="features",
                **shared,
            )
        scope.change(
            lambda name: (
                gr.Number(visible=name == "fisher"),
                gr.Textbox(visible=name == "semantic"),
            ),
            inputs=[scope],
            outputs=[rank, target],
            api_name=False,
        )
    return page.queue(max_size=QUEUE_SIZE)


def free_port(host: str) -> int:
    """A port nothing listens on now (Gradio needs a number to announce; 0 is not one)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def start(
    app: ExplorerApp,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    directory: str | Path | None = None,
) -> gradio.Blocks:
    """Builds the page and serves it on host:port in a background thread (port 0: a free one).
    The page's address is ``.local_url``; :func:`stop` stops it. Download files go to
    `directory` (default: a temporary directory of the page's own)."""
    _require_gradio()
    page = build_blocks(AppHandlers(app, directory))
    page.launch(
        server_name=host,
        server_port=port or free_port(host),
        share=False,
        inbrowser=False,
        prevent_thread_lock=True,
        quiet=True,
        show_error=False,
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
        run_history=False,
        footer_links=["api"],
        theme=_theme(),
        css=CSS,
    )
    return page


def stop(page: gradio.Blocks) -> None:
    """Stops serving at once (a fraction of a second): the server and its queue close, and a
    request still computing is answered to no one (its connection is closed)."""
    server = getattr(page, "server", None)
    if server is not None:
        # Uvicorn would wait for every open response to end (a request computing, the page's
        # event stream) until Gradio's 5 s join gives up; leave them to close with the loop.
        server.force_exit = True
    # Uvicorn logs each response it cancels as an error with a traceback; they are cancelled
    # on purpose here.
    server_log = logging.getLogger("uvicorn.error")
    level = server_log.level
    server_log.setLevel(logging.CRITICAL + 1)
    try:
        page.close(verbose=False)
    finally:
        server_log.setLevel(level)


def _theme() -> Any:
    gr = _require_gradio()
    return gr.themes.Default(
        font=["system-ui", "ui-sans-serif", "sans-serif"],
        font_mono=["ui-monospace", "DejaVu Sans Mono", "monospace"],
    )


__all__ = [
    "INSTALL_HINT",
    "AppHandlers",
    "Answer",
    "build_blocks",
    "free_port",
    "gradio_installed",
    "frame_html",
    "message_html",
    "start",
    "stop",
]
