"""The README's results tables are what ``scripts/results_table.py`` prints for the JSON files they name."""

import re

import pytest
from script_loader import ROOT, load_script

README = (ROOT / "README.md").read_text()
# Each table opens with the line results_table.py writes first: "<n> runs: <file>, <file>, ...; mean ± std ..."
TABLES = re.findall(r"^\d+ runs: (.+?); mean ± std \(min-max\) over runs$", README, flags=re.MULTILINE)


def test_the_readme_has_results_tables() -> None:
    assert len(TABLES) >= 20


@pytest.mark.slow
@pytest.mark.parametrize("names", TABLES, ids=[names.split(",")[0] for names in TABLES])
def test_readme_table_is_generated_from_its_json(names: str) -> None:
    paths = [ROOT / "docs" / "results" / name for name in names.split(", ")]
    missing = [path.name for path in paths if not path.is_file()]
    assert not missing, f"the README names results that docs/results/ lacks: {missing}"
    table = load_script("results_table").results_table(paths)
    assert table in README, (
        f"the README's table of {names} is not what scripts/results_table.py prints for them; paste its output:\n{table}"
    )
