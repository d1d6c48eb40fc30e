"""The plugin's code is written in the form that both QGIS 3.22 (Qt 5, PyQt5) and QGIS 4 (Qt 6, PyQt6) accept,
so that metadata.txt can say ``supportsQt6=True``: no PyQt5 imports, no ``QVariant`` field types outside
``loc2_qgis/compat.py``, no ``exec_()``, only fully scoped enums, ``QAction`` not from QtWidgets, no classes
Qt 6 removed. Each offence is named by file and line."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[1] / "loc2_qgis"
SOURCES = sorted(p for p in PLUGIN.rglob("*.py") if "loc2_engine" not in p.parts)
#: the one module allowed to name Qt-5-only API, to pick the right one at run time
COMPAT = PLUGIN / "compat.py"
#: classes and functions that Qt 6 removed or renamed
GONE = {"QRegExp", "QRegExpValidator", "QDesktopWidget", "QGLWidget", "QMatrix", "QStringRef", "QTextCodec",
        "QSound", "QWebView"}
#: PyQt5 spellings a regex finds best
LINE_RULES = [
    (re.compile(r"\b(from|import)\s+PyQt5\b"), "import through qgis.PyQt, not PyQt5"),
    (re.compile(r"\.exec_\("), "exec_() is gone in PyQt6: call exec()"),
    (re.compile(r"\bQVariant\.(Int|UInt|LongLong|ULongLong|Double|String|Bool|Date|DateTime|Time|ByteArray|"
                r"List|Map|StringList|Invalid)\b"), "QVariant types are gone in PyQt6: use compat.field_type"),
    (re.compile(r"\bQt\.(MidButton|AllDockWidgetFeatures)\b"), "removed in Qt 6"),
]


def _class_names(tree) -> set:
    """Names of Qt and QGIS classes imported by the module (from qgis.*)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("qgis"):
            names.update(alias.asname or alias.name for alias in node.names)
    return {n for n in names if n.startswith("Q") or n == "Qt"}


def offences(path: Path):
    text = path.read_text(encoding="utf-8")
    found = []
    if path != COMPAT:
        for number, line in enumerate(text.splitlines(), 1):
            for pattern, why in LINE_RULES:
                if pattern.search(line.split("#", 1)[0]):
                    found.append((number, why, line.strip()))
    tree = ast.parse(text, str(path))
    classes = _class_names(tree)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("QtWidgets") and path != COMPAT:
            if any(alias.name in ("QAction", "QActionGroup", "QShortcut") for alias in node.names):
                found.append((node.lineno, "QAction moved to QtGui in Qt 6: import it from compat", ""))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("qgis"):
            for alias in node.names:
                if alias.name in GONE:
                    found.append((node.lineno, f"{alias.name} is gone in Qt 6", ""))
        # ``Qt.AlignLeft``: an enum member read straight off a class; Qt 6 wants ``Qt.AlignmentFlag.AlignLeft``
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in classes
                and node.attr[:1].isupper() and not node.attr.isupper()):
            parent = parents.get(node)
            scoped = isinstance(parent, ast.Attribute) and parent.value is node  # Qt.AlignmentFlag.<member>
            called = isinstance(parent, ast.Call) and parent.func is node  # a nested class built: Foo.Bar(...)
            looked_up = (isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name)
                         and parent.func.id == "getattr")  # getattr(QMetaType.Type, name): the enum itself
            if not scoped and not called and not looked_up:
                found.append((node.lineno, f"short-form enum {node.value.id}.{node.attr}: give its enum's name",
                              ""))
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PLUGIN)))
def test_plugin_code_is_qt6_clean(path):
    found = offences(path)
    assert not found, "\n".join(f"{path.relative_to(PLUGIN.parent)}:{line}: {why} {code}".rstrip()
                                for line, why, code in found)


def test_the_checks_catch_what_they_are_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from PyQt5.QtCore import Qt\n"
                   "from qgis.PyQt.QtCore import Qt, QVariant\n"
                   "from qgis.PyQt.QtWidgets import QAction, QDialog\n"
                   "a = QVariant.Int\n"
                   "QDialog().exec_()\n"
                   "b = Qt.AlignLeft\n"
                   "c = Qt.AlignmentFlag.AlignLeft\n")
    lines = sorted({line for line, _why, _code in offences(bad)})
    assert lines == [1, 3, 4, 5, 6]


def test_metadata_says_qt6_once_the_code_is_clean():
    meta = (PLUGIN / "metadata.txt").read_text(encoding="utf-8")
    assert re.search(r"^supportsQt6=True$", meta, re.M)
