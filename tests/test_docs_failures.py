"""docs/failures.md lists every bad-input and fault case with the test that covers it: a test
renamed or removed must take its row along, or the table would promise coverage that is gone."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_named_in_the_failure_table_exists():
    table = (ROOT / "docs" / "failures.md").read_text()
    named = set(re.findall(r"`(test_\w+\.py)::(\w+)`", table))
    assert len(named) > 50
    missing = [f"{file}::{name}" for file, name in sorted(named)
               if not (ROOT / "tests" / file).is_file()
               or not re.search(rf"^def {name}\(", (ROOT / "tests" / file).read_text(), re.M)]
    assert not missing, f"docs/failures.md names tests that do not exist: {missing}"
