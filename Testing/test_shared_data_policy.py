"""Tests that need ../shared skip on a developer machine without it and fail under CI=true (the brief's rule)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

TESTING = Path(__file__).resolve().parent


def _run_a_test_missing_shared_data(tmp_path: Path, ci: str) -> subprocess.CompletedProcess:
    test_file = tmp_path / "test_needs_shared.py"
    test_file.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTING)!r})
        from conftest import require_shared_data

        def test_needs_shared_data():
            require_shared_data("shared samples not found at /nonexistent")
    """))
    environment = {key: value for key, value in os.environ.items() if key != "CI"}
    if ci:
        environment["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                           "--rootdir", str(tmp_path), str(test_file)],
                          cwd=tmp_path, env=environment, capture_output=True, text=True)


def test_missing_shared_data_fails_under_ci(tmp_path: Path) -> None:
    result = _run_a_test_missing_shared_data(tmp_path, "true")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "CI must provide it" in result.stdout and "1 failed" in result.stdout


def test_missing_shared_data_skips_on_a_developer_machine(tmp_path: Path) -> None:
    result = _run_a_test_missing_shared_data(tmp_path, "")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout and "shared samples not found" in result.stdout
