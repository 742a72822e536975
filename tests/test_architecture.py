"""The structure the code promises (issue 30): shared records in a leaf, one storage interface that both backends
implement in full, a factory that imports only the backend it opens, and the UI, viewer and evaluation going through
`KnowledgeBase` rather than its store."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "peru_qa"


def _package_imports(module: str, top_level_only: bool = False) -> set[str]:
    """The package modules `module` imports (relative `from .x import` and `peru_qa.x`)."""
    tree = ast.parse((SRC / f"{module}.py").read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # `if TYPE_CHECKING:` blocks are for the type checker only
        nodes = [n for n in nodes if not (isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test))]
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                found |= {node.module} if node.module else {a.name for a in node.names}
            elif node.module and node.module.startswith("peru_qa"):
                found.add(node.module.split(".", 1)[-1])
    return found


def test_records_is_a_leaf():
    assert _package_imports("records") <= {"errors"}
    assert _package_imports("errors") == set()


def test_backends_imports_no_implementation_at_module_level():
    assert not _package_imports("backends", top_level_only=True) & {"store", "pgstore", "derived"}


@pytest.mark.parametrize("module", ["ingest", "maintenance", "retrieval", "kb", "answer_types"])
def test_layers_above_storage_know_only_the_interface(module):
    assert not _package_imports(module, top_level_only=True) & {"store", "pgstore", "derived"}


@pytest.mark.parametrize("module", ["ui", "viewer", "evaluation"])
def test_ui_viewer_and_evaluation_go_through_the_knowledge_base(module):
    tree = ast.parse((SRC / f"{module}.py").read_text(encoding="utf-8"))
    reached = [ast.unparse(n) for n in ast.walk(tree)
               if isinstance(n, ast.Attribute) and n.attr == "store" and "kb" in ast.unparse(n.value)]
    assert reached == []


def _members(protocol) -> dict[str, object]:
    return {name: value for name, value in vars(protocol).items()
            if not name.startswith("_") and (callable(value) or isinstance(value, property))}


@pytest.mark.parametrize("protocol, implementations", [
    ("IndexStore", [("store", "Store"), ("pgstore", "PgStore")]),
    ("SearchIndexes", [("derived", "DerivedIndexes"), ("pgstore", "PgIndexes")]),
])
def test_both_backends_implement_the_whole_interface(protocol, implementations):
    import importlib

    from peru_qa import backends

    members = _members(getattr(backends, protocol))
    assert members
    for module, name in implementations:
        cls = getattr(importlib.import_module(f"peru_qa.{module}"), name)
        for member, declared in members.items():
            assert hasattr(cls, member), f"{name} lacks {protocol}.{member}"
            if callable(declared):
                want = list(inspect.signature(declared).parameters)
                got = list(inspect.signature(getattr(cls, member)).parameters)
                assert got[: len(want)] == want, f"{name}.{member}{got} differs from {protocol}.{member}{want}"
