"""The README's no-tenant demo keeps working."""

from __future__ import annotations

import subprocess
import sys

from tests.support.gunicorn import ROOT


def test_the_demo_shows_a_file_landing() -> None:
    """`python -m tests.demo` (what scripts/demo.sh runs) passes `check` and mirrors its file."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.demo"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    assert "landed as 'Documents/dossier/rapports/2025 Q1： bilan？.txt'" in result.stdout
