"""Every bench script starts from a fresh clone as documented (`python bench/<name>.py`), from
any working directory and without PYTHONPATH or an installed package."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(BENCH.glob("*.py"))


def test_bench_folder_has_scripts():
    assert {path.name for path in SCRIPTS} >= {"train_step.py", "data.py", "fewshot.py", "patch_embed.py"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_bench_script_help_runs_from_another_folder(script, tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout
    assert "No module named" not in result.stderr


@pytest.mark.parametrize("script", sorted(BENCH.glob("*.sh")), ids=lambda path: path.name)
def test_bench_shell_scripts_parse(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
