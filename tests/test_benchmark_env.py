"""Smoke test of scripts/benchmark_env.py: the quick run finishes and writes every section (numbers not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_env.py"


@pytest.mark.slow
def test_quick_benchmark_writes_every_section(tmp_path: Path) -> None:
    output = tmp_path / "benchmark.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(output)], capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr
    results = json.loads(output.read_text())
    assert {"single_env", "reset_scaling", "vec_env", "large_grammar", "training"} <= results.keys()
    assert [row["columns"] for row in results["large_grammar"]] == ["rules", "labels"]
    assert results["single_env"]["parse_steps_per_s"] > 0
    assert [row["n_envs"] for row in results["vec_env"]] == [1, 16]
    assert "| N envs |" in completed.stdout
