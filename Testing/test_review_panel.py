"""The review panel's keyboard-only review: every action has a shortcut, shown in the panel, no clashes."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from test_module import MODULE_FILE, import_module_file

UI_FILE = MODULE_FILE.parent / "Resources" / "UI" / "SarcomaLungLiverBrowser.ui"


def test_verdicts_next_finding_and_comment_have_distinct_shortcuts_wired_by_name():
    module = import_module_file()
    table = module.REVIEW_SHORTCUTS
    actions = {action for _, action, _ in table}
    assert {"accept", "needs correction", "reject", "jump to the next finding", "write a comment",
            "next case", "previous case", "next unreviewed case"} <= actions
    keys = [keys for keys, _, _ in table]
    assert len(set(keys)) == len(keys), "two actions share a shortcut"
    # Slicer's own application shortcuts the module must not take over.
    assert not set(keys) & {"Ctrl+O", "Ctrl+S", "Ctrl+F", "Ctrl+W", "Ctrl+Z", "Ctrl+Y", "Ctrl+0", "Ctrl+3"}
    for _, _, method_name in table:
        assert callable(getattr(module.SarcomaLungLiverBrowserWidget, method_name)), method_name


def test_shortcuts_exist_only_while_the_module_is_shown_and_are_listed_in_the_panel():
    tree = ast.parse(MODULE_FILE.read_text())
    widget = next(node for node in tree.body if isinstance(node, ast.ClassDef)
                  and node.name == "SarcomaLungLiverBrowserWidget")
    methods = {node.name: ast.get_source_segment(MODULE_FILE.read_text(), node) for node in widget.body
               if isinstance(node, ast.FunctionDef)}
    assert "QShortcut" in methods["enter"] and "REVIEW_SHORTCUTS" in methods["enter"]
    assert "setParent(None)" in methods["exit"]
    assert not any("QShortcut" in source for name, source in methods.items() if name != "enter")
    assert "shortcutsLabel" in methods["setup"] and "REVIEW_SHORTCUTS" in methods["setup"]
    assert re.search(r'name="shortcutsLabel"', UI_FILE.read_text())


def test_readme_shortcut_table_is_the_module_s_table():
    """The README's keyboard table lists exactly the shortcuts the panel installs, key for key."""
    readme = (MODULE_FILE.parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("Keyboard-only review", 1)[1].split("\n\n", 2)[1]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| Ctrl")]
    assert {keys.strip(): action.strip() for keys, action in rows} == {
        keys: action for keys, action, _ in import_module_file().REVIEW_SHORTCUTS}

