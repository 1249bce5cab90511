"""The tutorial notebooks (docs/tutorials) run end to end on the shipped default model, their
stored outputs agree with a fresh run, and they use only public names that exist.

Each notebook is executed with nbclient in a temporary copy, on a kernel started from the
interpreter running the tests. Cells tagged ``check-*`` print only facts that do not depend on
the TransformerLens version or model kind (the top token, sink positions, the first generated
token), so their stored stdout must equal the fresh run's; cells tagged ``figure`` must show a
PNG in both.

To store fresh outputs, execute each notebook top to bottom in one kernel with progress bars and
tqdm's widget warning off, so that no cell keeps a stderr output, e.g. from docs/tutorials:
``TQDM_DISABLE=1 PYTHONWARNINGS="ignore:IProgress not found" OMP_NUM_THREADS=1 jupyter nbconvert
--to notebook --execute --inplace 01_first_attribution.ipynb``.
"""

from __future__ import annotations

import ast
import importlib
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "docs" / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))

# The HTML reports and the explorer inline a JavaScript bundle of about 1.3 MB; a notebook that
# displayed one would be far over these.
MAX_NOTEBOOK_BYTES = 400_000
MAX_HTML_OUTPUT_CHARS = 20_000
SHOWN_TYPES = {"text/plain", "text/html", "image/png"}
PROBE = "import sys\nprint(sys.executable)"


def _code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(
        output.text
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stdout"
    )


def _shows_png(cell: nbformat.NotebookNode) -> bool:
    return any("image/png" in output.get("data", {}) for output in cell.outputs)


def _errors(notebook: nbformat.NotebookNode) -> list[str]:
    return [
        f"{output.ename}: {output.evalue}"
        for cell in _code_cells(notebook)
        for output in cell.outputs
        if output.output_type == "error"
    ]


def test_the_three_tutorials_are_there():
    assert [path.name for path in NOTEBOOKS] == [
        "01_first_attribution.ipynb",
        "02_inside_and_generation.ipynb",
        "03_sae_features.ipynb",
    ]


@pytest.fixture(scope="module", params=NOTEBOOKS, ids=lambda path: path.stem)
def runs(request, tmp_path_factory):
    """(stored, fresh): the notebook as committed and the same notebook executed now."""
    path = request.param
    stored = nbformat.read(path, as_version=4)
    folder = tmp_path_factory.mktemp(path.stem)
    copy = folder / path.name
    shutil.copy(path, copy)
    fresh = nbformat.read(copy, as_version=4)
    fresh.cells.append(nbformat.v4.new_code_cell(PROBE, metadata={"tags": ["probe"]}))
    with pytest.MonkeyPatch.context() as patch:
        # The kernel inherits this environment: offline, one thread per process.
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("OMP_NUM_THREADS", "1")
        client = NotebookClient(
            fresh,
            kernel_name="python3",
            timeout=600,
            resources={"metadata": {"path": str(folder)}},
        )
        client.execute()
    return stored, fresh


def test_runs_without_errors_on_this_interpreter(runs):
    _, fresh = runs
    assert _errors(fresh) == []
    probe = _code_cells(fresh)[-1]
    assert _tags(probe) == ["probe"]
    assert Path(_stdout(probe).strip()).resolve() == Path(sys.executable).resolve()


def test_stored_outputs_are_complete_and_small(runs):
    stored, _ = runs
    cells = _code_cells(stored)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1)), (
        "store the notebook executed top to bottom in one kernel"
    )
    assert _errors(stored) == []
    assert not any(
        output.output_type == "stream" and output.name == "stderr"
        for cell in cells
        for output in cell.outputs
    ), "a stored cell printed to stderr (a warning or progress bar)"
    for cell in cells:
        for output in cell.outputs:
            data = output.get("data", {})
            assert set(data) <= SHOWN_TYPES, f"unexpected output types {sorted(data)}"
            assert len(data.get("text/html", "")) <= MAX_HTML_OUTPUT_CHARS, (
                "an HTML report or explorer page is displayed inline; write it to a file"
            )
    assert len(nbformat.writes(stored).encode()) <= MAX_NOTEBOOK_BYTES


def test_checked_cells_match_the_stored_run(runs):
    stored, fresh = runs
    stored_cells, fresh_cells = _code_cells(stored), _code_cells(fresh)[:-1]
    assert [cell.source for cell in stored_cells] == [cell.source for cell in fresh_cells]
    checked = 0
    for old, new in zip(stored_cells, fresh_cells, strict=True):
        if any(tag.startswith("check-") for tag in _tags(old)):
            assert _stdout(old).strip(), f"checked cell printed nothing:\n{old.source}"
            assert _stdout(new) == _stdout(old), f"fresh output differs for:\n{old.source}"
            checked += 1
    assert checked >= 2


def test_every_figure_cell_shows_a_png(runs):
    stored, fresh = runs
    figures = [index for index, cell in enumerate(_code_cells(stored)) if "figure" in _tags(cell)]
    assert len(figures) >= 1
    for index in figures:
        assert _shows_png(_code_cells(stored)[index]), f"stored figure cell {index} has no PNG"
        assert _shows_png(_code_cells(fresh)[index]), f"fresh figure cell {index} has no PNG"


# Public names ------------------------------------------------------------------------------------


def _python_source(cell: nbformat.NotebookNode) -> str:
    """A code cell without its IPython magics (lines starting with % or !)."""
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines()
    )


def _tlscopes_names(source: str) -> list[tuple[str, str]]:
    """Every (module, name) the code takes from tlscopes: ``ts.NAME`` after ``import tlscopes as
    ts``, ``analysis.NAME`` after ``from tlscopes import analysis``, ``from tlscopes.X import
    NAME``, and the attribute after it (``ts.Attribution.load``) as (``tlscopes.Attribution``,
    ``load``)."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}
    used: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "tlscopes":
                    aliases[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else "tlscopes"
                    )
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tlscopes":
            for alias in node.names:
                used.append((node.module, alias.name))
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain: list[str] = []
            inner: ast.expr = node
            while isinstance(inner, ast.Attribute):
                chain.insert(0, inner.attr)
                inner = inner.value
            if (
                isinstance(inner, ast.Name)
                and inner.id in aliases
                and node is _outermost(tree, node)
            ):
                base = aliases[inner.id]
                for attribute in chain:
                    used.append((base, attribute))
                    base = f"{base}.{attribute}"
    return used


def _outermost(tree: ast.AST, node: ast.Attribute) -> ast.Attribute:
    """`node` unless it is the value of a longer attribute chain (then that chain's top)."""
    for parent in ast.walk(tree):
        if isinstance(parent, ast.Attribute) and parent.value is node:
            return _outermost(tree, parent)
    return node


def _resolve(dotted: str) -> object:
    """The object at a dotted path below tlscopes, importing subpackage faces on the way."""
    parts = dotted.split(".")
    value: object = importlib.import_module(parts[0])
    for index, part in enumerate(parts[1:], start=1):
        try:
            value = getattr(value, part)
        except AttributeError:
            value = importlib.import_module(".".join(parts[: index + 1]))
    return value


def _is_public(module: str, name: str) -> bool:
    """`name` is in the `__all__` of the face `module`, is a subpackage of it (another face), or
    is an attribute of the public object `module` (a method of a public class)."""
    owner = _resolve(module)
    if not isinstance(owner, ModuleType):
        return hasattr(owner, name)
    if name in getattr(owner, "__all__", ()):
        return True
    try:
        child = importlib.import_module(f"{module}.{name}")
    except ModuleNotFoundError:
        return False
    return hasattr(child, "__path__") and hasattr(child, "__all__")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebooks_use_only_public_names_that_exist(path):
    notebook = nbformat.read(path, as_version=4)
    used = [
        pair for cell in _code_cells(notebook) for pair in _tlscopes_names(_python_source(cell))
    ]
    assert any(module == "tlscopes" for module, _ in used), "the notebook does not use ts.NAME"
    missing, private = [], []
    for module, name in used:
        if name.startswith("_"):
            private.append(f"{module}.{name}")
        elif not _is_public(module, name):
            missing.append(f"{module}.{name}")
    assert missing == [] and private == []


# In the prose: `ts.NAME...` and `tlscopes.NAME...` (a dotted path, each step checked).
MENTION = re.compile(r"\b(ts|tlscopes)((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def _mentioned_names(text: str) -> list[tuple[str, str]]:
    """Every (module, name) step of the ``ts.``/``tlscopes.`` paths written in `text`."""
    used = []
    for match in MENTION.finditer(text):
        base = "tlscopes"
        for name in match.group(2).split(".")[1:]:
            used.append((base, name))
            base = f"{base}.{name}"
    return used


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_prose_mentions_only_public_names_that_exist(path):
    notebook = nbformat.read(path, as_version=4)
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    used = _mentioned_names(text)
    assert used, "the notebook's prose names no tlscopes function"
    assert [f"{module}.{name}" for module, name in used if not _is_public(module, name)] == []


def test_the_name_check_finds_what_it_should():
    source = (
        "import tlscopes as ts\nfrom tlscopes import analysis\n"
        "r = ts.attribute(m, p, ts.FisherScope())\nts.Attribution.load('x')\n"
        "analysis.sink_positions(q)\nr.top(3)\n"
    )
    assert sorted(_tlscopes_names(source)) == [
        ("tlscopes", "Attribution"),
        ("tlscopes", "FisherScope"),
        ("tlscopes", "analysis"),
        ("tlscopes", "attribute"),
        ("tlscopes.Attribution", "load"),
        ("tlscopes.analysis", "sink_positions"),
    ]
    assert _is_public("tlscopes", "analysis") and _is_public("tlscopes.Attribution", "load")
    assert not _is_public("tlscopes", "no_such_name")
    assert not _is_public("tlscopes", "core.engine")  # a module, not a name of the face
    assert not _is_public("tlscopes.core", "engine")  # a module, not a face
    assert not _is_public("tlscopes.Attribution", "no_such_method")
    assert _mentioned_names("see `ts.Attribution.load` and tlscopes.analysis; ts.x2") == [
        ("tlscopes", "Attribution"),
        ("tlscopes.Attribution", "load"),
        ("tlscopes", "analysis"),
        ("tlscopes", "x2"),
    ]
