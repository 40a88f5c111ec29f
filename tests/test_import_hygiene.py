"""DESIGN.md's two import rules: colabtui_remote never imports Textual; colabtui imports no torch
outside the demo. Checked twice: statically over every module, and by importing in a fresh process."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import colabtui_remote

import colabtui

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_colabtui_remote_sources_never_import_textual_or_the_laptop_package():
    files = list((ROOT / "remote" / "colabtui_remote").rglob("*.py"))
    assert len(files) >= 8
    for path in files:
        bad = imported_modules(path) & {"textual", "rich", "httpx", "colabtui"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_colabtui_sources_import_torch_only_in_the_demo():
    files = list((ROOT / "colabtui").rglob("*.py"))
    assert len(files) >= 5
    for path in files:
        if path.name == "demo.py":
            continue
        assert "torch" not in imported_modules(path), f"{path.relative_to(ROOT)} imports torch"


def _all_modules(package) -> list[str]:
    return [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]


def _loaded_after_importing(modules: list[str]) -> set[str]:
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(' '.join(sorted({n.split('.')[0] for n in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_importing_every_colabtui_remote_module_loads_no_textual_and_no_torch():
    modules = [m for m in _all_modules(colabtui_remote) if ".examples." not in m
               and m.rsplit(".", 1)[-1] not in FRAMEWORKS]  # those import their framework
    loaded = _loaded_after_importing(modules)
    assert "colabtui_remote" in loaded and "colabtui_remote.integrations.bridge" in modules
    assert not loaded & {"textual", "torch", "rich", *FRAMEWORKS}


FRAMEWORKS = {"transformers", "lightning", "keras"}


def test_each_integration_imports_its_own_framework_only(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")  # Keras 3's default backend is not installed
    for name in sorted(FRAMEWORKS):
        path = ROOT / "remote" / "colabtui_remote" / "integrations" / f"{name}.py"
        assert imported_modules(path) & FRAMEWORKS == {name}  # (lightning itself may load more)
        assert name in _loaded_after_importing([f"colabtui_remote.integrations.{name}"])


def test_importing_every_colabtui_module_but_the_demo_loads_no_torch():
    modules = [m for m in _all_modules(colabtui) if not m.endswith(".demo")]
    loaded = _loaded_after_importing(modules)
    assert "textual" in loaded
    assert "torch" not in loaded


def test_the_figures_and_the_client_protocol_load_no_textual():
    """``colabtui status`` computes work at risk and ages without the app."""
    loaded = _loaded_after_importing(["colabtui.figures", "colabtui.session_client"])
    assert "colabtui" in loaded
    assert not loaded & {"textual", "rich", "torch"}
