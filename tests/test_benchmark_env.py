"""Smoke test of scripts/benchmark_env.py: the quick run finishes and writes every section (numbers not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from script_loader import load_script

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


def test_policy_benchmark_times_both_policies_first_layers_and_set_entries() -> None:
    module = load_script("benchmark_policy")
    for policy in module.POLICIES:
        row = module.time_training("LinguisticParse-v0", policy, steps=256)
        assert row["policy"] == policy and row["steps"] >= 256 and row["steps_per_second"] > 0
        assert 0 < row["rollout_share"] < 1
    # Other PPO settings replace the entry's: 16 steps per env make a rollout of 128 steps (1,024 with the entry's)
    row = module.time_training("LinguisticParse-v0", "factored", steps=256, hyperparams={"n_steps": 16})
    assert row["steps"] == 256 and row["hyperparams"] == {"n_steps": 16}
    # rl_zoo3's schedule strings (v1's "lin_1e-3") reach MaskablePPO as callables
    assert callable(module.zoo_settings("LinguisticParse-v1")[2]["learning_rate"])
    layer = module.time_first_layer("LinguisticParse-v0", batch_size=8, repeats=1)
    assert layer["dense_seconds"] > 0 and layer["sparse_seconds"] > 0
    # v1's entry observes the derived constituents: every key's set entries are found both ways, and checked equal
    entries = module.time_set_entries("LinguisticParse-v1", batch_size=8, repeats=1)
    assert min(entries[f"{way}_seconds"] for way in ("nonzero", "set_entries", "any", "any_set")) > 0
