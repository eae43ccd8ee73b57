"""The benchmark command runs end to end (tiny sizes); its call counts are the contract's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks import run


def test_benchmark_runs_and_counts_the_contracted_calls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A quick run prints the table, and a small event costs 2 S3 calls, 1 Graph call, no token call.

    No timing is asserted: the numbers depend on the machine.
    """
    # The benchmark points REQUESTS_CA_BUNDLE and SSL_CERT_FILE at its own CA in os.environ
    # (right for a script); monkeypatch puts the test process's values back afterwards.
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    output = tmp_path / "results.json"
    assert run.main(["--events", "10", "--concurrent-events", "16", "--large-mib", "5",
                     "--json", str(output)]) == 0
    results = json.loads(output.read_text())
    assert (results["s3_calls"], results["graph_calls"], results["token_calls"]) == (2.0, 1.0, 0)
    table = capsys.readouterr().out
    assert "| metric" in table
    assert "large object (5 MiB)" in table
