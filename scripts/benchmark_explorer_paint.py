"""How fast an explorer page opens and reacts in headless Chromium, at 256 to 8,192 tokens.

For each length, a page is built with ``tlscopes.app.explore`` from a tiny seeded toy model
(``tlscopes.testing.toy``: a Llama-style TransformerBridge with d_model 16 and, by default,
SmolLM2-135M's 30 layers, so that the layer x token maps have their real size): the three
scopes explained at one position (the last), layer maps on. The text is toy words, one token
each after the BOS. Each page is opened from its file in Debian's Chromium, headless, through
playwright (as the browser tests do), in a fresh page per repeat, and the page reports:

* **first contentful paint**: the Performance API's ``first-contentful-paint`` entry (the
  page's first text; the title heading can come before the explorer has mounted);
* **tokens coloured**: the first animation frame after the explorer's script has put every
  token in the DOM with its colour (an init script polls with requestAnimationFrame; the
  explorer mounts and colours in one task, so the first frame after it sees the finished view);
* **first frame drawn**: a task queued from that frame's callback, so after its paint;
* **longest task**: the longest main-thread task while the page opened (Long Tasks API, which
  sees tasks over 50 ms), the longest the page could not answer input;
* **click recolours**: a click on the most influential token with Alt held (which masks it,
  so every other token's colour is renormalised: the explorer's whole view is redrawn, as a
  click that explains another position redraws it), measured as the script's handling of the
  event and until a task after the next frame; the median of --clicks clicks (they alternate:
  mask, unmask).

Every time is in milliseconds from the page's navigation start (the click's from the click);
each is the median over --repeats page loads. Page size is the file's size in MB (10^6
bytes).

The live app (``tlscopes.app``, on Gradio), at each of --app-lengths: the app started on the
same toy model with ``max_tokens`` at that length, the text typed into the page and *explain*
clicked (Fisher, the last position), timed until every token is shown coloured in the page's
highlighted text and the status message is there, with the longest main-thread task meanwhile
(the first of --repeats clicks on one page, which builds the token elements, and the median);
beside it the handler alone (``AppHandlers.explain``: the attribution, the payload and the
download files, no browser), the median of --repeats calls.

The results are printed and written, with the command and the machine, to --out.

    python scripts/benchmark_explorer_paint.py [--lengths 256 1024 4096 8192] [--layers 30]
        [--repeats 3] [--clicks 5] [--app-lengths 8192]
        [--out results/bench/explorer_paint_2026-12-07.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from tlscopes.testing.chromium import CHROMIUM, CHROMIUM_ARGS

warnings.filterwarnings("ignore")
# Runs before the page's own scripts: records the first frame after the explorer has rendered
# (its container gets data-position once every token is in the DOM and coloured) and every
# long task.
PROBE = """
(() => {
  const probe = { ready: null, painted: null, tokens: null, longest: 0 };
  window.__tlxProbe = probe;
  try {
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) probe.longest = Math.max(probe.longest, entry.duration);
    }).observe({ type: "longtask", buffered: true });
  } catch (error) { probe.longest = null; }
  function poll() {
    const box = document.querySelector(".tlx[data-position]");
    if (!box) { requestAnimationFrame(poll); return; }
    probe.ready = performance.now();
    probe.tokens = box.querySelectorAll(".tlx-token").length;
    requestAnimationFrame(() => setTimeout(() => { probe.painted = performance.now(); }, 0));
  }
  requestAnimationFrame(poll);
})();
"""
# The longest main-thread task since window.__tlxLongest was last set to 0.
LONG_TASKS = """
window.__tlxLongest = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    window.__tlxLongest = Math.max(window.__tlxLongest, entry.duration);
  }
}).observe({ type: "longtask" });
"""
CLICK = """
async ([position, clicks]) => {
  const spans = [...document.querySelectorAll(".tlx-token")];
  const span = spans[position];
  const colours = () => spans.map((s) => getComputedStyle(s).backgroundColor).join(" ");
  const frame = () => new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)));
  const handled = [], drawn = [], changed = [];
  for (let i = 0; i < clicks; i++) {
    const before = colours();
    const start = performance.now();
    span.dispatchEvent(new MouseEvent("click", { bubbles: true, altKey: true }));
    handled.push(performance.now() - start);
    await frame();
    drawn.push(performance.now() - start);
    changed.push(colours() !== before);
  }
  return { handled, drawn, changed };
}
"""


def toy_model(length: int, layers: int) -> Any:
    from tlscopes.testing.toy import build_bridge

    return build_bridge(
        max_position_embeddings=length, num_hidden_layers=layers, dtype=torch.float32
    )


def build_page(model: Any, length: int, folder: Path) -> tuple[Path, int, float]:
    """The page's file, the most influential unmasked token of the first scope, and the seconds
    it took to build."""
    from tlscopes.app.explorer import explore_payload
    from tlscopes.testing.toy import toy_text
    from tlscopes.views.explorer_page import explorer_report

    start = time.perf_counter()
    payload = explore_payload(model, toy_text(length), positions=[-1], layers=True)
    seconds = time.perf_counter() - start
    if len(payload["tokens"]) != length:
        raise RuntimeError(f"the toy text is {len(payload['tokens'])} tokens, not {length}")
    row = payload["scopes"][0]["rows"][0]
    masked = set(payload["masked"])
    top = max((t for t in range(len(row)) if t not in masked), key=lambda t: row[t] or 0)
    path = explorer_report(payload).save(folder / f"explorer_{length}.html").path
    return path, top, seconds


def open_page(browser: Any, path: Path, top: int, clicks: int) -> dict[str, Any]:
    """One load of the page in a fresh context: the probe's times and the clicks'."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.route(
            "**/*",
            lambda route: (
                route.continue_() if route.request.url == path.resolve().as_uri() else route.abort()
            ),
        )
        page.add_init_script(PROBE)
        page.goto(path.resolve().as_uri(), timeout=300_000)
        page.wait_for_function("window.__tlxProbe.painted !== null", timeout=300_000)
        probe = page.evaluate("window.__tlxProbe")
        fcp = page.evaluate(
            "(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime ?? null"
        )
        nodes = page.evaluate("document.getElementsByTagName('*').length")
        clicked = page.evaluate(CLICK, [top, clicks])
        if errors:
            raise RuntimeError(f"{path.name}: the page raised {errors[0]}")
        if not all(clicked["changed"]):
            raise RuntimeError(f"{path.name}: a click did not recolour the tokens")
        return {
            "fcp_ms": fcp,
            "ready_ms": probe["ready"],
            "painted_ms": probe["painted"],
            "longest_task_ms": probe["longest"],
            "tokens": probe["tokens"],
            "dom_nodes": nodes,
            "click_handled_ms": statistics.median(clicked["handled"]),
            "click_drawn_ms": statistics.median(clicked["drawn"]),
        }
    finally:
        context.close()


def median_of(loads: list[dict[str, Any]], key: str) -> float | None:
    values = [load[key] for load in loads if load[key] is not None]
    return statistics.median(values) if values else None


def measure(browser: Any, path: Path, top: int, repeats: int, clicks: int) -> dict[str, Any]:
    loads = [open_page(browser, path, top, clicks) for _ in range(repeats)]
    keys = ("fcp_ms", "ready_ms", "painted_ms", "longest_task_ms")
    keys += ("click_handled_ms", "click_drawn_ms")
    measured: dict[str, Any] = {key: median_of(loads, key) for key in keys}
    measured["tokens"] = loads[0]["tokens"]
    measured["dom_nodes"] = loads[0]["dom_nodes"]
    measured["page_mb"] = path.stat().st_size / 1e6
    measured["loads"] = loads
    return measured


def measure_app(browser: Any, model: Any, length: int, repeats: int) -> dict[str, Any]:
    """The live app at `length` tokens: the handler's seconds and click-to-shown seconds."""
    from tlscopes.app.explorer_app import ExplorerApp
    from tlscopes.app.ui import AppHandlers, start, stop
    from tlscopes.testing.toy import toy_text

    text = toy_text(length)
    app = ExplorerApp({"toy": lambda: model}, max_tokens=length)
    handlers = AppHandlers(app)
    handler = []
    for _ in range(repeats):
        start_time = time.perf_counter()
        answer = handlers.explain(text)
        handler.append(time.perf_counter() - start_time)
        if answer.error:
            raise RuntimeError(f"the app refused {length} tokens: {answer.message}")
    served = start(app, "127.0.0.1", 0)
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        page = context.new_page()
        page.goto(served.local_url, timeout=120_000)
        page.wait_for_selector("#text textarea", timeout=120_000)
        page.locator("#text").get_by_role("textbox").fill(text)
        page.evaluate(LONG_TASKS)
        shown, blocked = [], []
        for attempt in range(repeats):
            # The position alternates (-1, -2), so each answer's message differs from the last.
            explained = length - 1 - attempt % 2
            page.locator("#position input").fill(str(explained - length))
            page.evaluate("window.__tlxLongest = 0")
            start_time = time.perf_counter()
            page.click("#explain")
            page.wait_for_function(
                """([said, coloured]) => {
                    // Every token up to the explained one coloured, the leading BOS left out.
                    const message = document.querySelector("#message p");
                    return message && message.textContent.includes(said)
                        && document.querySelectorAll("#tokens .token.highlighted").length === coloured
                        && [...document.querySelectorAll("[data-testid=status-tracker]")]
                            .every((tracker) => tracker.classList.contains("hide"));
                }""",
                arg=[f"after token {explained} ", explained],
                timeout=600_000,
                polling=20,
            )
            shown.append(time.perf_counter() - start_time)
            blocked.append(page.evaluate("window.__tlxLongest"))
        tokens = page.locator("#tokens .token").count()
        if tokens != length:
            raise RuntimeError(f"the app showed {tokens} tokens, not {length}")
        box = page.eval_on_selector("#tokens", "e => [e.clientHeight, e.scrollHeight]")
    finally:
        context.close()
        stop(served)
    return {
        "tokens": tokens,
        "handler_s": statistics.median(handler),
        "shown_s": shown,
        "longest_task_ms": blocked,
        "box": box,
    }


def launch(playwright: Any) -> Any:
    if not CHROMIUM.exists():
        raise SystemExit(f"no Chromium at {CHROMIUM}: install it or set TLSCOPES_CHROMIUM")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def machine(browser_version: str) -> list[str]:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = found.group(1).strip() if found else cpu
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        found = re.search(r"MemTotal:\s*(\d+)", meminfo.read_text())
        memory = f", {int(found.group(1)) / 2**20:.0f} GiB" if found else ""
    return [
        f"{os.cpu_count()} cores ({cpu}){memory}, {platform.system()} {platform.release()}",
        f"Chromium {browser_version} (headless, {' '.join(CHROMIUM_ARGS[1:])}), "
        f"Python {platform.python_version()}, torch {torch.__version__}",
    ]


def fmt(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def longest(value: float | None) -> str:
    # The Long Tasks API reports only tasks over 50 ms.
    return "n/a" if value is None else "< 50 ms" if value == 0 else f"{value:,.0f} ms"


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| tokens | page | DOM nodes | first contentful paint | tokens coloured | first frame "
        "drawn | longest task | click: handled | click: next frame | page built in |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['tokens']:,} | {row['page_mb']:.2f} MB | {row['dom_nodes']:,} | "
            f"{fmt(row['fcp_ms'])} ms | {fmt(row['ready_ms'])} ms | {fmt(row['painted_ms'])} ms | "
            f"{longest(row['longest_task_ms'])} | {fmt(row['click_handled_ms'])} ms | "
            f"{fmt(row['click_drawn_ms'])} ms | {fmt(row['build_s'], 1)} s |"
        )
    return lines


def app_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| tokens | handler (attribution, payload, files) | click to every token shown "
        "coloured: first, median | longest task: first, median | token box: shown / whole "
        "height |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        shown, blocked = row["shown_s"], row["longest_task_ms"]
        lines.append(
            f"| {row['tokens']:,} | {row['handler_s']:.2f} s | {shown[0]:.2f} s, "
            f"{statistics.median(shown):.2f} s | {longest(blocked[0])}, "
            f"{longest(statistics.median(blocked))} | {row['box'][0]:,} / {row['box'][1]:,} px |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096, 8192])
    parser.add_argument("--layers", type=int, default=30, help="the toy model's layers")
    parser.add_argument("--repeats", type=int, default=3, help="page loads per length")
    parser.add_argument("--clicks", type=int, default=5, help="clicks per page load")
    parser.add_argument(
        "--app-lengths",
        type=int,
        nargs="*",
        default=None,
        help="lengths at which the live app is timed (default: the longest of --lengths; none: "
        "--app-lengths with no value)",
    )
    parser.add_argument("--out", type=Path, default=None, help="a Markdown file for the results")
    parser.add_argument("--keep", type=Path, default=None, help="a folder to keep the pages in")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    command = "python " + shlex.join(["scripts/benchmark_explorer_paint.py", *sys.argv[1:]])
    app_lengths = [max(args.lengths)] if args.app_lengths is None else args.app_lengths
    load_before = os.getloadavg()
    model = toy_model(max([*args.lengths, *app_lengths]), args.layers)
    rows, app_rows = [], []
    with tempfile.TemporaryDirectory(prefix="tlscopes-paint-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = launch(playwright)
            facts = machine(browser.version)
            for length in args.lengths:
                path, top, seconds = build_page(model, length, folder)
                row = measure(browser, path, top, args.repeats, args.clicks)
                row["build_s"] = seconds
                rows.append(row)
                print(table([row])[-1], flush=True)
            for length in app_lengths:
                app_rows.append(measure_app(browser, model, length, args.repeats))
                print(app_table(app_rows[-1:])[-1], flush=True)
            browser.close()
    load_after = os.getloadavg()
    lines = [
        f"# Explorer pages in headless Chromium ({datetime.date.today().isoformat()})",
        "",
        "```",
        command,
        "```",
        "",
        *(f"- {fact}" for fact in facts),
        f"- load average {load_before[0]:.1f} before, {load_after[0]:.1f} after",
        f"- toy model: a Llama-style TransformerBridge, {args.layers} layers, d_model 16, "
        "float32; three scopes at the last position, layer maps on",
        f"- medians of {args.repeats} page loads (each click time: the median of "
        f"{args.clicks} clicks per load)",
        "",
        *table(rows),
        "",
        *(
            [
                f"The live app (Fisher at the last position; {args.repeats} handler calls and "
                f"{args.repeats} clicks on one page, the position alternating -1, -2):",
                "",
                *app_table(app_rows),
                "",
            ]
            if app_rows
            else []
        ),
        "Per load (ms):",
        "",
        "```json",
        json.dumps({str(row["tokens"]): row["loads"] for row in rows}, indent=1, default=float),
        "```",
        "",
        "The live app, per click:",
        "",
        "```json",
        json.dumps(app_rows, indent=1, default=float),
        "```",
        "",
    ]
    text = "\n".join(lines)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
