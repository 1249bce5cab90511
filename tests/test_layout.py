"""The shape of the code (STYLE.md, issue 20): subpackages with lazy faces, at most ten modules
at the top, no import cycle of any kind, no underscore name crossing a subpackage border, views
that know no result class, analyses on the public faces only, and a test module per module."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "tlscopes"
MAX_TOP_LEVEL_MODULES = 10


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def library_files() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(LIBRARY.rglob("*.py"))}


MODULES = library_files()
FACES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


def face_homes(face: str) -> dict[str, str]:
    """A face's _HOMES, read from its source: public name -> defining module."""
    tree = ast.parse(MODULES[face].read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "_HOMES" for target in node.targets
        ):
            return ast.literal_eval(node.value)
    return {}


def imports_of(path: Path) -> list[tuple[str, str | None]]:
    """Every (module, name) a file imports, at any place: module level, inside functions and
    under TYPE_CHECKING alike. `name` is None for `import module`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.extend((node.module, alias.name) for alias in node.names)
    return found


def resolved_imports(name: str) -> set[str]:
    """The library modules `name` depends on. An import through a face counts as an import of
    the module that defines the name (faces themselves import lazily)."""
    targets = set()
    for module, imported in imports_of(MODULES[name]):
        if not module.startswith("tlscopes"):
            continue
        if imported is not None and f"{module}.{imported}" in MODULES:
            targets.add(f"{module}.{imported}")
        elif module in FACES and imported is not None:
            targets.add(face_homes(module).get(imported, module))
        elif module in MODULES:
            targets.add(module)
    return {target for target in targets if target != name and target not in FACES}


def subpackage(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or name in FACES else "tlscopes"


def test_at_most_ten_modules_at_the_top():
    top = [path.name for path in LIBRARY.glob("*.py")]
    assert len(top) <= MAX_TOP_LEVEL_MODULES, sorted(top)


def test_every_subpackage_has_a_face_with_all():
    for folder in sorted(p for p in LIBRARY.iterdir() if p.is_dir() and any(p.glob("*.py"))):
        name = module_name(folder / "__init__.py")
        assert name in FACES, f"{folder.name}/ has no __init__.py"
        module = importlib.import_module(name)
        assert isinstance(getattr(module, "__all__", None), list), f"{name} has no __all__"


@pytest.mark.parametrize("face", sorted(FACES))
def test_a_face_hands_on_names_that_exist_where_it_says(face):
    homes = face_homes(face)
    if face == "tlscopes.cli":
        return  # the command line's face is its main()
    module = importlib.import_module(face)
    assert sorted(homes) == list(module.__all__), f"{face}: __all__ is not sorted(_HOMES)"
    submodules = {name.rsplit(".", 1)[-1] for name in MODULES if name.startswith(face + ".")}
    for name, home in homes.items():
        assert name not in submodules, f"{face}.{name} is both a public name and a submodule"
        assert name in vars(importlib.import_module(home)), f"{home} does not define {name}"
        assert getattr(module, name) is getattr(importlib.import_module(home), name)
    # The TYPE_CHECKING block (what type checkers and the API docs read) agrees with _HOMES.
    checked = {
        imported: source
        for source, imported in imports_of(MODULES[face])
        if imported and source.startswith("tlscopes.") and source != "tlscopes._lazy"
    }
    assert checked == homes, f"{face}: its TYPE_CHECKING imports and _HOMES disagree"


def test_the_top_level_names_are_public_in_their_subpackage_too():
    for name, home in face_homes("tlscopes").items():
        face = home if home in FACES else home.rsplit(".", 1)[0]
        if face == "tlscopes":
            continue  # a shared top-level module (tokens)
        assert name in face_homes(face), f"tlscopes.{name} is not in {face}'s face"


def test_modules_export_only_what_they_define():
    for name in MODULES:
        if name in FACES or name.endswith("__main__"):
            continue
        module = importlib.import_module(name)
        for exported in getattr(module, "__all__", []):
            home = getattr(getattr(module, exported), "__module__", None) or name
            # A function or class defined in another tlscopes module is a re-export.
            assert home == name or not home.startswith("tlscopes"), f"{name} re-exports {exported}"


def test_every_library_module_has_its_test_module():
    tests = {path.stem for path in (ROOT / "tests").rglob("test_*.py")}
    missing = []
    for name in MODULES:
        leaf = name.rsplit(".", 1)[-1]
        if name in FACES or leaf.startswith("_"):
            continue
        if name.startswith("tlscopes.cli."):
            leaf = "cli"  # the command line's modules are tested through it, in test_cli
        if not any(t == f"test_{leaf}" or t.startswith(f"test_{leaf}_") for t in tests):
            missing.append(name)
    assert not missing, f"library modules without a test module: {missing}"


def test_the_library_has_no_import_cycle_of_any_kind():
    graph = {name: resolved_imports(name) for name in MODULES if name not in FACES}
    visiting, done = set(), set()

    def visit(node: str, trail: list[str]) -> None:
        if node in done:
            return
        assert node not in visiting, "import cycle: " + " -> ".join([*trail, node])
        visiting.add(node)
        for child in sorted(graph.get(node, ())):
            visit(child, [*trail, node])
        visiting.discard(node)
        done.add(node)

    for name in sorted(graph):
        visit(name, [])


def test_no_underscore_name_crosses_a_subpackage_border():
    crossings = []
    for name, path in MODULES.items():
        for module, imported in imports_of(path):
            if not module.startswith("tlscopes") or imported is None:
                continue
            if imported.startswith("_") and module != "tlscopes._lazy":
                if subpackage(module) != subpackage(name) or module in FACES:
                    crossings.append(f"{name} imports {imported} from {module}")
    assert not crossings, crossings


def test_views_know_no_result_class():
    for name, path in MODULES.items():
        if not name.startswith("tlscopes.views"):
            continue
        for module, _ in imports_of(path):
            assert not module.startswith("tlscopes.results"), f"{name} imports {module}"


# The shared top-level modules are public too: the model Protocol and the token helpers.
SHARED_MODULES = ("tlscopes.protocols", "tlscopes.tokens")


def public_api() -> dict[str, set[str]]:
    api = {face: set(face_homes(face)) for face in FACES if face != "tlscopes.cli"}
    for name in SHARED_MODULES:
        module = importlib.import_module(name)
        api[name] = {n for n in vars(module) if not n.startswith("_")}
    return api


@pytest.mark.parametrize("path", sorted((ROOT / "analyses").glob("*.py")), ids=lambda p: p.name)
def test_analyses_use_only_the_public_faces(path):
    api = public_api()
    for module, imported in imports_of(path):
        top = module.split(".")[0]
        assert top != "analyses", f"{path.name} imports another analysis ({module})"
        if top != "tlscopes":
            continue
        assert module in api, f"{path.name} imports from {module}, which is not a public face"
        if imported is not None and f"{module}.{imported}" not in FACES:
            assert imported in api[module], f"{path.name}: {module} does not export {imported}"


@pytest.mark.parametrize("path", sorted((ROOT / "scripts").glob("*.py")), ids=lambda p: p.name)
def test_scripts_never_import_the_tests(path):
    imported = {module for module, _ in imports_of(path)}
    assert not any(name == "tests" or name.startswith("tests.") for name in imported), path.name


def test_the_cli_help_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, tlscopes.cli; print('torch' in sys.modules)"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert output == "False"
