"""The code stays as the house style asks: ruff clean everywhere, mypy strict on the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Below pytest-timeout's 300 s, so a slow tool fails with this message, not a stack dump.
TOOL_TIMEOUT_SECONDS = 240


def run(*command: str) -> subprocess.CompletedProcess[str]:
    """Run a tool from this environment at the repository root."""
    try:
        return subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(command)} did not finish within {TOOL_TIMEOUT_SECONDS} s")


def test_ruff_finds_nothing() -> None:
    """`ruff check` passes with the rule set in pyproject.toml."""
    result = run(str(BIN / "ruff"), "check", "--output-format", "concise", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_passes_on_the_package() -> None:
    """`mypy` (strict, as pyproject.toml sets it) finds no error in sharepoint_proxy/."""
    result = run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout + result.stderr
