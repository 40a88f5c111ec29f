"""The layers of both packages, as ARCHITECTURE.md draws them: the import graph of every module,
built with ``ast`` (imports inside functions included), has no cycle, and no module imports one
of a higher layer. In the spirit of harlequin's ``tests/unit_tests/test_import_hygiene.py``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"colabtui_remote": ROOT / "remote" / "colabtui_remote", "colabtui": ROOT / "colabtui"}

# Bottom to top. A module's layer is the first entry whose name is the module or a package above
# it. The Drive library sits below the checkpoint replicas that use it (checkpoint/drive.py), and
# imports nothing of the package outside itself (REMOTE_ALONE).
REMOTE_LAYERS = [
    ["colabtui_remote.wire"],
    ["colabtui_remote.schema"],
    ["colabtui_remote.commands", "colabtui_remote.metrics", "colabtui_remote.metric_values",
     "colabtui_remote.gpu", "colabtui_remote.host", "colabtui_remote.throughput",
     "colabtui_remote.signals", "colabtui_remote.data_order", "colabtui_remote.lifecycle",
     "colabtui_remote.runtime"],
    ["colabtui_remote.checkpoint.errors"],
    ["colabtui_remote.checkpoint.fs", "colabtui_remote.checkpoint.manifest",
     "colabtui_remote.checkpoint.state", "colabtui_remote.checkpoint.state_dicts",
     "colabtui_remote.checkpoint.trackable", "colabtui_remote.checkpoint.folders"],
    ["colabtui_remote.drive"],
    ["colabtui_remote.checkpoint"],
    ["colabtui_remote.transport"],
    ["colabtui_remote.saving", "colabtui_remote.report", "colabtui_remote.loops"],
    ["colabtui_remote.distributed"],
    ["colabtui_remote.monitor"],
    ["colabtui_remote.integrations"],
    ["colabtui_remote.examples", "colabtui_remote"],
]
REMOTE_ALONE = {"colabtui_remote.drive"}
"""Wings that import nothing of their package outside themselves."""

LAPTOP_LAYERS = [
    ["colabtui_remote"],
    ["colabtui"],  # the package's __init__: its version, nothing else
    ["colabtui.formatting", "colabtui.figures", "colabtui.alerts", "colabtui.notebook_cell",
     "colabtui.notebook_wheel", "colabtui.colab", "colabtui.colab.url", "colabtui.colab.errors"],
    ["colabtui.config"],
    ["colabtui.crash_log", "colabtui.alert_delivery", "colabtui.colab.account"],
    ["colabtui.colab.proxy", "colabtui.colab.kernel"],
    ["colabtui.colab.contents"],
    ["colabtui.colab.launch"],
    ["colabtui.colab.launches"],
    ["colabtui.session_client"],
    ["colabtui.client", "colabtui.mailbox_client", "colabtui.drive_mailbox"],
    ["colabtui.colab.client"],
    ["colabtui.transport"],
    ["colabtui.ledger_rollup", "colabtui.ledger_history"],
    ["colabtui.ledger", "colabtui.ledger_writes", "colabtui.curves", "colabtui.poller"],
    ["colabtui.history"],
    ["colabtui.widgets"],
    ["colabtui.screens"],
    ["colabtui.app", "colabtui.app_alerts", "colabtui.app_views", "colabtui.app_relaunch"],
    ["colabtui.demo", "colabtui.cli", "colabtui.cli_drive", "colabtui.cli_watch",
     "colabtui.cli_history", "colabtui.cli_notebook", "colabtui.cli_colab", "colabtui.cli_launch"],
    ["colabtui.__main__"],
]


def module_name(package: str, root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def modules_of(package: str) -> dict[str, Path]:
    root = PACKAGES[package]
    return {module_name(package, root, p): p for p in sorted(root.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str], missing: list[str] | None = None
               ) -> set[str]:
    """The modules of ``known`` that ``path`` (module ``name``) imports, anywhere in it; a
    relative import of a module that does not exist is appended to ``missing``."""
    is_package = path.name == "__init__.py"
    base = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        while target and target not in known:  # a name inside a module: that module
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                module = f"{anchor}.{node.module}" if node.module else anchor
                if missing is not None and module not in known:
                    missing.append(f"{name}: from {'.' * node.level}{node.module or ''}")
            else:
                module = node.module or ""
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module)
    return found


def graph(package: str, known: set[str] | None = None) -> dict[str, set[str]]:
    mods = modules_of(package)
    known = set(mods) | (known or set())
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def layer(name: str, layers: list[list[str]]) -> int:
    best = None
    for i, names in enumerate(layers):
        for prefix in names:
            inside = name == prefix or name.startswith(prefix + ".")
            if inside and (best is None or len(prefix) > best[1]):
                best = (i, len(prefix))
    assert best is not None, f"{name} is in no layer: add it to the layers in {__file__}"
    return best[0]


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def upward(g: dict[str, set[str]], layers: list[list[str]]) -> list[str]:
    bad = []
    for name, targets in sorted(g.items()):
        for target in sorted(targets):
            if layer(target, layers) > layer(name, layers):
                bad.append(f"{name} (layer {layer(name, layers)}) imports {target} "
                           f"(layer {layer(target, layers)})")
    return bad


@pytest.fixture(scope="module")
def remote_graph():
    return graph("colabtui_remote")


@pytest.fixture(scope="module")
def laptop_graph():
    return graph("colabtui", known=set(modules_of("colabtui_remote")))


def test_the_graphs_see_function_level_and_relative_imports(remote_graph):
    # monitor imports the http transport at module level, examples.digits the Monitor inside
    # a function: both must be edges, or the checks below could not fail.
    assert "colabtui_remote.transport.http.serve" in remote_graph["colabtui_remote.monitor"]
    assert "colabtui_remote.checkpoint.errors" in remote_graph["colabtui_remote.checkpoint.fs"] \
        or "colabtui_remote.checkpoint.errors" in remote_graph["colabtui_remote.checkpoint.manifest"]
    assert len(remote_graph) >= 30


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_relative_import_names_a_module_that_exists(package):
    mods = modules_of(package)
    missing: list[str] = []
    for name, path in mods.items():
        imports_of(name, path, set(mods), missing)
    assert missing == []


def test_the_checks_catch_a_cycle_and_an_upward_import():
    g = {"colabtui_remote.schema": {"colabtui_remote.monitor"},
         "colabtui_remote.monitor": {"colabtui_remote.schema"}}
    assert cycles(g) == [["colabtui_remote.monitor", "colabtui_remote.schema"]]
    assert upward(g, REMOTE_LAYERS) == [
        "colabtui_remote.schema (layer 1) imports colabtui_remote.monitor (layer 10)"]


def test_the_notebook_side_has_no_import_cycle(remote_graph):
    assert cycles(remote_graph) == []


def test_the_notebook_side_imports_only_downward(remote_graph):
    assert upward(remote_graph, REMOTE_LAYERS) == []


def test_the_drive_library_imports_nothing_of_the_checkpoints_or_the_mailbox(remote_graph):
    for name, targets in remote_graph.items():
        wing = next((w for w in REMOTE_ALONE if name == w or name.startswith(w + ".")), None)
        if wing is not None:
            outside = {t for t in targets if not (t == wing or t.startswith(wing + "."))}
            assert not outside, f"{name} imports {outside}"


def test_the_laptop_side_has_no_import_cycle(laptop_graph):
    assert cycles(laptop_graph) == []


def test_the_laptop_side_imports_only_downward(laptop_graph):
    assert upward(laptop_graph, LAPTOP_LAYERS) == []


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_module_is_over_600_lines(package):
    long = {name: n for name, path in modules_of(package).items()
            if (n := len(path.read_text().splitlines())) > 600}
    assert long == {}


def test_the_monitor_only_orchestrates():
    lines = len((PACKAGES["colabtui_remote"] / "monitor.py").read_text().splitlines())
    assert lines <= 450, f"monitor.py has {lines} lines"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_folder_says_what_its_wing_is_for(package):
    for folder in [PACKAGES[package], *(p for p in PACKAGES[package].rglob("*") if p.is_dir()
                                        and p.name != "__pycache__")]:
        init = folder / "__init__.py"
        assert init.exists(), f"{folder} has no __init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init} does not say what the wing is for"
