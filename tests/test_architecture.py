"""The shape of the code: imports point one way (cli -> workflows -> the rest), no cycles, MLflow
only in tracking, and a bad override costs no heavy import. Function-local imports count."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import REPO_ROOT

SRC = REPO_ROOT / "src"
ENTRY_POINTS = ("pipeline.cli",)
ORCHESTRATION = ("pipeline.workflows",)
LIBRARY = (
    "pipeline.config",
    "pipeline.data",
    "pipeline.models",
    "pipeline.task",
    "pipeline.trainer",
    "pipeline.compress",
    "pipeline.sweeps",
    "pipeline.tracking",
    "hydra_plugins",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in SRC.rglob("*.py")}


def imported_names(module: str) -> set[str]:
    """Every module ``module`` imports, at the top or inside a function, as dotted names."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names)
    return names


def own_module(name: str) -> str | None:
    """The module of this repository that ``name`` (a module or something inside one) belongs to."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


GRAPH = {
    module: {own for name in imported_names(module) if (own := own_module(name)) not in (None, module)}
    for module in MODULES
}


def in_package(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while (top := stack.pop()) != module:
                component.append(top)
            if component:
                found.append(sorted([module, *component]))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_the_checker_sees_function_local_imports_and_cycles() -> None:
    assert "pipeline.workflows.train" in GRAPH["pipeline.cli.train"]  # imported inside run_job()
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_the_modules() -> None:
    assert cycles(GRAPH) == []


@pytest.mark.parametrize("lower, upper", [(LIBRARY, ENTRY_POINTS + ORCHESTRATION), (ORCHESTRATION, ENTRY_POINTS)])
def test_imports_point_down_from_entry_points_to_orchestration_to_library(
    lower: tuple[str, ...], upper: tuple[str, ...]
) -> None:
    upward = sorted(
        f"{module} imports {imported}"
        for module, imports in GRAPH.items()
        if in_package(module, lower)
        for imported in imports
        if in_package(imported, upper)
    )
    assert upward == []


def test_only_the_tracking_package_imports_mlflow() -> None:
    outside = [module for module in MODULES if not in_package(module, ("pipeline.tracking",))]
    assert [
        module for module in outside if any(name.split(".")[0] == "mlflow" for name in imported_names(module))
    ] == []


def test_train_reads_as_a_story_in_well_under_50_lines() -> None:
    tree = ast.parse(MODULES["pipeline.workflows.train"].read_text())
    (train,) = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "train"]
    docstring = train.body[0]
    assert train.end_lineno - docstring.end_lineno < 30


def test_a_bad_override_is_reported_before_torch_lightning_or_mlflow_is_imported() -> None:
    program = (
        "import sys\n"
        "from pipeline.cli.train import main\n"
        "sys.argv = ['pipeline-train', 'optimizer.lr=abc']\n"
        "try:\n    main()\n"
        "except SystemExit as exit:\n"
        "    print(exit.code, sorted({'torch', 'pytorch_lightning', 'mlflow'} & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "2 []", done.stderr
    assert done.stderr.strip().startswith("error: optimizer.lr:")


def test_nothing_in_the_repository_cites_notes_outside_it() -> None:
    """Facts the project relies on live in docs/; the team's own notes beside the repository are not shipped."""
    listed = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    outside = ("FIELD_NOTES", "DESIGN.md", "../shared")
    citing = []
    for name in listed.stdout.splitlines():
        path = REPO_ROOT / name
        if path == Path(__file__).resolve() or path.suffix == ".png" or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        citing += [f"{name}: {marker}" for marker in outside if marker in text]
    assert citing == []
