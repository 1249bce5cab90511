"""The shape of the code: one test module per library module, short modules, analyses on the
public API only, scripts independent of the tests, and no import cycles."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "tlscopes"
MAX_LINES = 400
# The modules whose public names (their __all__, else every name without a leading
# underscore) analyses and users may rely on; the README's Layout section lists them.
PUBLIC_MODULES = {
    "tlscopes",
    "tlscopes.evaluation.ablation",
    "tlscopes.app.explorer_app",
    "tlscopes.analysis.attention",
    "tlscopes.core.engine",
    "tlscopes.methods.baselines",
    "tlscopes.evaluation.datasets",
    "tlscopes.evaluation.runner",
    "tlscopes.views.explorer",
    "tlscopes.fisher.directions",
    "tlscopes.generation.attribution",
    "tlscopes.core.inputs",
    "tlscopes.core.layers",
    "tlscopes.core.matrix",
    "tlscopes.methods.registry",
    "tlscopes.models.loading",
    "tlscopes.analysis.path_integrand",
    "tlscopes.views.plotting",
    "tlscopes.protocols",
    "tlscopes.testing.reference",
    "tlscopes.testing.toy",
    "tlscopes.results.attribution",
    "tlscopes.core.scopes",
    "tlscopes.evaluation.summaries",
    "tlscopes.analysis.timeseries",
    "tlscopes.tokens",
    "tlscopes.views.html",
}


def library_modules() -> list[str]:
    names = []
    for path in sorted(LIBRARY.rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def runtime_imports(path: Path) -> set[str]:
    """Modules a file imports when it runs (module level or inside functions), leaving out
    `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_every_library_module_has_its_test_module():
    tests = {path.stem for path in (ROOT / "tests").rglob("test_*.py")}
    missing = []
    for name in library_modules():
        leaf = name.rsplit(".", 1)[-1]
        if name == "tlscopes" or leaf.startswith("_"):
            continue
        if name.startswith("tlscopes.cli."):
            leaf = "cli"  # the command line's modules are tested through it, in test_cli
        if not any(t == f"test_{leaf}" or t.startswith(f"test_{leaf}_") for t in tests):
            missing.append(name)
    assert not missing, f"library modules without a test module: {missing}"


def test_no_library_file_is_over_the_limit():
    long = {
        str(path.relative_to(ROOT)): n
        for path in LIBRARY.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines: {long}"


def public_names(module_name: str) -> set[str]:
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    if exported is not None:
        return set(exported)
    return {name for name in vars(module) if not name.startswith("_")}


@pytest.mark.parametrize("path", sorted((ROOT / "analyses").glob("*.py")), ids=lambda p: p.name)
def test_analyses_use_only_the_public_api(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            assert top != "analyses", f"{path.name} imports another analysis ({node.module})"
            if top != "tlscopes":
                continue
            assert node.module in PUBLIC_MODULES, f"{path.name} imports {node.module}"
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in PUBLIC_MODULES:
                    continue
                assert alias.name in public_names(node.module), (
                    f"{path.name} imports {alias.name} from {node.module}, which does not export it"
                )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("tlscopes."):
                    assert alias.name in PUBLIC_MODULES, f"{path.name} imports {alias.name}"


@pytest.mark.parametrize("path", sorted((ROOT / "scripts").glob("*.py")), ids=lambda p: p.name)
def test_scripts_never_import_the_tests(path):
    imported = runtime_imports(path)
    assert not any(name == "tests" or name.startswith("tests.") for name in imported), path.name


def test_the_library_has_no_import_cycles():
    modules = set(library_modules())
    graph = {}
    for name in modules:
        path = ROOT / Path(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        graph[name] = {m for m in runtime_imports(path) if m in modules and m != name}
    # The package's own lazy exports import every module on demand; they are not a cycle.
    graph["tlscopes"] = set()
    visiting, done = set(), set()

    def visit(node: str, trail: list[str]) -> None:
        if node in done:
            return
        assert node not in visiting, "import cycle: " + " -> ".join([*trail, node])
        visiting.add(node)
        for child in sorted(graph[node]):
            visit(child, [*trail, node])
        visiting.discard(node)
        done.add(node)

    for name in sorted(graph):
        visit(name, [])
