"""The docs site and the README (issue 20): the site builds in strict mode and offline, the
README stays short, every relative link and every named path resolves, and every API name the
README and the docs show exists. The tutorial notebooks have their own test."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 150


def pages() -> list[Path]:
    """The README and every Markdown page of the docs."""
    return [README, *sorted(DOCS.rglob("*.md"))]


# --- the built site -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=900,
    )
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout}\n{run.stderr}"
    return out


def test_site_builds_every_page(site: Path) -> None:
    for page in DOCS.rglob("*.md"):
        built = site / page.relative_to(DOCS).with_suffix(".html")
        assert built.is_file(), f"{page.relative_to(ROOT)} was not built"
    for notebook in (DOCS / "tutorials").glob("*.ipynb"):
        assert (site / "tutorials" / f"{notebook.stem}.html").is_file(), notebook.name
    # The API reference documents each face's names, read from its _HOMES.
    assert 'id="tlscopes.attribute"' in (site / "api" / "tlscopes.html").read_text("utf-8")
    assert 'id="tlscopes.core.FisherScope"' in (site / "api" / "core.html").read_text("utf-8")


def test_every_face_has_an_api_page() -> None:
    faces = {path.parent.name for path in (ROOT / "tlscopes").glob("*/__init__.py")}
    pages_ = {path.stem for path in (DOCS / "api").glob("*.md")}
    assert faces - pages_ == set(), "subpackages without a page under docs/api/"
    for face in faces:
        assert f"::: tlscopes.{face}" in (DOCS / "api" / f"{face}.md").read_text("utf-8"), face


# What makes a page load something from another host.
EXTERNAL = [
    re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//", re.I),
    re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//", re.I),
    re.compile(r"@import\s+(?:url\()?\s*[\"']?(?:https?:)?//", re.I),
    re.compile(r"url\(\s*[\"']?(?:https?:)?//", re.I),
    re.compile(r"\bimport\(\s*[\"'](?:https?:)?//", re.I),
    re.compile(r"fonts\.googleapis|fonts\.gstatic", re.I),
]


def external_loads(text: str) -> list[str]:
    return [match.group(0) for pattern in EXTERNAL for match in pattern.finditer(text)]


def test_external_load_patterns_catch_cdns() -> None:
    for loader in [
        '<script src="https://cdn.example/x.js"></script>',
        "<link rel=stylesheet href='//fonts.example/css'>",
        "@import url(https://fonts.googleapis.com/css?family=Roboto);",
        "@font-face { src: url('https://x.example/f.woff2') }",
        'const m = (await import("https://cdnjs.cloudflare.com/m.mjs")).default;',
    ]:
        assert external_loads(loader), loader
    assert not external_loads('<a href="https://arxiv.org/abs/2601.16407">the paper</a>')


def test_site_loads_nothing_from_another_host(site: Path) -> None:
    found = {}
    for path in [*site.rglob("*.html"), *site.rglob("*.css")]:
        loads = external_loads(path.read_text("utf-8", errors="replace"))
        if loads:
            found[str(path.relative_to(site))] = loads[:3]
    assert not found, f"pages that load from another host: {found}"
    # Material's bundle loads mermaid from a CDN only for a page with a mermaid diagram.
    diagrams = [p.name for p in site.rglob("*.html") if 'class="mermaid"' in p.read_text("utf-8")]
    assert not diagrams, f"mermaid diagrams would load mermaid from a CDN: {diagrams}"


# --- the Markdown sources ---------------------------------------------------------------------

FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
SPAN = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def prose(text: str) -> str:
    """The text without code blocks and code spans (where brackets are not links)."""
    return SPAN.sub("", FENCE.sub("", text))


def code(text: str) -> list[str]:
    """Every code block and code span, each as one piece."""
    blocks = [match.group(0) for match in FENCE.finditer(text)]
    return blocks + [match.group(2) for match in SPAN.finditer(FENCE.sub("", text))]


def test_readme_is_short() -> None:
    lines = README.read_text("utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_relative_links_resolve() -> None:
    broken = []
    for page in pages():
        for target in LINK.findall(prose(page.read_text("utf-8"))):
            if re.match(r"[a-z][a-z0-9+.-]*:|#", target):  # https:, mailto:, same-page anchor
                continue
            path, _, anchor = target.partition("#")
            linked = page.parent / path
            if not linked.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and linked.suffix == ".md" and anchor not in heading_ids(linked):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, f"links to files or headings that do not exist: {broken}"


def heading_ids(page: Path) -> set[str]:
    """The anchors of a page's Markdown headings, as MkDocs (and GitHub) write them."""
    from markdown.extensions.toc import slugify

    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", FENCE.sub("", page.read_text("utf-8")), re.M)
    return {slugify(SPAN.sub(r"\2", heading), "-") for heading in headings}


# Repository paths named in code: tlscopes/core/layers.py, tests/unit/..., scripts/....
REPO_PATH = re.compile(r"(?<![\w./~-])((?:tlscopes|tests|scripts|results|analyses|docs)/[\w./*-]*)")


def test_named_paths_exist() -> None:
    missing = []
    for page in pages():
        for piece in code(page.read_text("utf-8")):
            for path in REPO_PATH.findall(piece):
                path = path.rstrip(".")
                if not (list(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()):
                    missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert not missing, f"paths that do not exist: {missing}"


# --- API names --------------------------------------------------------------------------------

DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
IMPORT_AS = re.compile(r"^\s*import\s+(tlscopes(?:\.\w+)*)(?:\s+as\s+(\w+))?", re.M)
FROM_IMPORT = re.compile(r"^\s*from\s+(tlscopes(?:\.\w+)*)\s+import\s+(\([^)]*\)|[^\n#]+)", re.M)


def api_names(piece: str) -> set[str]:
    """The tlscopes names a piece of code uses: ``ts.NAME`` (ts is always ``tlscopes``),
    ``tlscopes.sub.NAME``, ``from tlscopes.sub import NAME`` and attributes of names imported
    in the same piece (``from tlscopes import methods; methods.saliency``)."""
    aliases = {"ts": "tlscopes"}
    names = set()
    for module, alias in IMPORT_AS.findall(piece):
        names.add(module)
        aliases[alias or module.split(".")[0]] = module if alias else "tlscopes"
    for module, imported in FROM_IMPORT.findall(piece):
        for item in imported.strip("()").split(","):
            parts = item.split()
            if parts:
                names.add(f"{module}.{parts[0]}")
                aliases[parts[-1]] = f"{module}.{parts[0]}"
    for alias, target in aliases.items():
        for match in re.finditer(rf"(?<![\w.]){re.escape(alias)}\.({DOTTED})", piece):
            names.add(f"{target}.{match.group(1)}")
    names.update(re.findall(rf"(?<![\w./-])(tlscopes\.{DOTTED})", piece))
    return names


def resolves(name: str) -> bool:
    """Whether ``tlscopes.a.b.NAME`` exists: each part an attribute of the one before, or a
    module."""
    parts = name.split(".")
    value = importlib.import_module(parts[0])
    for index, part in enumerate(parts[1:], start=1):
        try:
            value = getattr(value, part)
        except AttributeError:
            try:
                value = importlib.import_module(".".join(parts[: index + 1]))
            except ImportError:
                return False
    return True


def test_api_names_are_found() -> None:
    piece = "import tlscopes as ts\nfrom tlscopes.views import explore\nts.attribute(model)\n"
    piece += "explore.__call__; tlscopes.core.FisherScope()\nfrom tlscopes import (a,\n  b as c)"
    assert api_names(piece) == {
        "tlscopes",
        "tlscopes.views",
        "tlscopes.attribute",
        "tlscopes.views.explore",
        "tlscopes.views.explore.__call__",
        "tlscopes.core.FisherScope",
        "tlscopes.a",
        "tlscopes.b",
    }
    assert resolves("tlscopes.core.FisherScope")
    assert not resolves("tlscopes.core.NoSuchScope")


def test_every_api_name_shown_exists() -> None:
    shown: dict[str, set[str]] = {}
    for page in pages():
        for piece in code(page.read_text("utf-8")):
            for name in api_names(piece):
                shown.setdefault(name, set()).add(str(page.relative_to(ROOT)))
    assert "tlscopes.attribute" in shown  # the check sees the README's example
    missing = {name: sorted(where) for name, where in shown.items() if not resolves(name)}
    assert not missing, f"names shown in the docs that do not exist: {missing}"
