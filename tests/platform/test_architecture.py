"""The layering of docs/architecture.md, checked on the source: short modules, one-way arrows, no loops.

Imports are read with ``ast`` (those inside functions too), never by importing the modules. Each test
lists every offender it finds, not only the first one.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("triage", "annotations", "inference", "ehr", "neopain_site")
SKIPPED_DIRS = {"tests", "migrations", "scripts", ".venv", "node_modules", "staticfiles", "var", "artifacts"}
MAX_LINES = 500


def _project_files() -> list[Path]:
    """Every Python file of the project outside tests/, migrations/ and scripts/ (and the virtualenv)."""
    return sorted(
        path
        for path in ROOT.rglob("*.py")
        if not SKIPPED_DIRS.intersection(path.relative_to(ROOT).parts[:-1])
        and not any(part.startswith(".") for part in path.relative_to(ROOT).parts)
    )


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_modules() -> dict[str, Path]:
    """Dotted name -> file, for the modules of the project's packages."""
    return {_module_name(path): path for path in _project_files() if path.relative_to(ROOT).parts[0] in PACKAGES}


def _imported_names(path: Path, module: str) -> list[str]:
    """Every dotted name a module imports, anywhere in it (``from x import y`` gives ``x.y``)."""
    is_package = path.name == "__init__.py"
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from x import y`` runs ``x.y`` when that is a module, else ``x`` (see :func:`_resolve`).
            names.extend(base if alias.name == "*" else f"{base}.{alias.name}" for alias in node.names)
    return names


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an import name runs: the longest prefix that is a module.

    ``from triage.services import audit`` names the submodule ``triage.services.audit``;
    ``from triage.services import audit_record`` names the package ``triage.services`` (its
    ``__init__`` re-exports it). Importing a submodule also runs its package's ``__init__``, but that
    is not counted as an arrow: otherwise every submodule of a re-exporting package would be a loop.
    """
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph() -> dict[str, set[str]]:
    modules = _package_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {_resolve(name, modules) for name in _imported_names(path, module)}
        graph[module] = {target for target in targets if target is not None and target != module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        # Iterative depth-first search: the graph is a few hundred modules, but recursion is not needed.
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def test_no_project_module_is_over_500_lines():
    long_modules = {
        str(path.relative_to(ROOT)): count
        for path in _project_files()
        if (count := len(path.read_text().splitlines())) > MAX_LINES
    }

    assert long_modules == {}, f"split these by concern (limit {MAX_LINES} lines): {long_modules}"


def test_nothing_in_triage_imports_annotations():
    modules = _package_modules()
    upward = {
        module: sorted({name for name in _imported_names(path, module) if name.split(".")[0] == "annotations"})
        for module, path in modules.items()
        if module.split(".")[0] == "triage"
    }

    offenders = {module: names for module, names in upward.items() if names}
    assert offenders == {}, f"triage is below annotations, so it may not import it: {offenders}"


def test_project_modules_import_each_other_in_one_direction_only():
    cycles = import_cycles(import_graph())

    assert cycles == [], f"import loops: {cycles}"


def test_the_checks_see_the_arrows_they_are_meant_to_see():
    """The graph holds known arrows (so an empty loop list means something) and finds a planted loop."""
    graph = import_graph()

    assert "triage.services" in graph["triage.tasks"]
    assert "triage.services.audit" in graph["triage.services.units"]
    assert "triage.models" in graph["annotations.services"]
    assert "triage.services.audit" in graph["triage.services"]  # the package re-exports its modules
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


#: Which app may import which (docs/architecture.md): inference <- triage <- annotations; the project
#: package neopain_site (settings, root urls, the Celery app) sits on top and may import them all.
APP_MAY_IMPORT = {
    "inference": set(),
    "triage": {"inference"},
    "annotations": {"triage", "inference"},
    # FHIR for the EHR (issue 18): reads nurse decisions and verdicts; nothing but neopain_site imports it.
    "ehr": {"triage", "annotations", "inference"},
    "neopain_site": {"inference", "triage", "annotations", "ehr"},
}
#: Inside an app: models <- selectors/services <- tasks/apis/views (and their url modules, the admin).
LAYER_RANK = {
    "models": 0,
    "selectors": 1,
    "services": 1,
    "tasks": 2,
    "apis": 2,
    "views": 2,
    "urls": 2,
    "api_urls": 2,
    "admin": 2,
}


def _layer(module: str) -> int | None:
    """The layer of ``triage.services.audit`` is that of ``services``: the first named layer in its path."""
    return next((LAYER_RANK[part] for part in module.split(".")[1:] if part in LAYER_RANK), None)


def test_arrows_between_apps_and_layers_point_one_way():
    graph = import_graph()
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        for target in targets
        if (source_app := source.split(".")[0]) != (target_app := target.split(".")[0])
        and target_app not in APP_MAY_IMPORT[source_app]
        or (
            (source_layer := _layer(source)) is not None
            and (target_layer := _layer(target)) is not None
            and source_layer < target_layer
        )
    )

    assert upward == [], f"imports against the layers of docs/architecture.md: {upward}"


def test_no_merge_conflict_markers_in_tracked_files():
    """A merge that left ``<<<<<<<`` in a template renders it to nurses: no tracked text file holds a marker line."""
    import subprocess

    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    if listed.returncode != 0:
        import pytest

        pytest.skip("not a git checkout")
    markers = ("<<<<<<< ", ">>>>>>> ", "=======\n")
    offenders = []
    for name in listed.stdout.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file() or path.suffix in {".png", ".jpg", ".onnx", ".pt", ".mp4", ".gz", ".ico"}:
            continue
        try:
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        except (UnicodeDecodeError, OSError):
            continue
        offenders += [f"{name}:{number}" for number, line in enumerate(lines, 1) if line.startswith(markers)]
    assert offenders == [], f"merge conflict markers: {offenders}"
