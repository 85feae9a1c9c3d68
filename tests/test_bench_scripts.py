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


def test_seeds_table_pairs_the_student_with_each_model_by_seed(tmp_path):
    """Three runs: the means over seeds and the student's paired differences carry the Student-t
    half-width over seeds, starred only when the interval excludes 0."""
    import json
    settings = ("5way_1shot", "5way_5shot", "5way_1shot_disjoint", "5way_5shot_disjoint")
    student = (30.0, 31.0, 35.0)       # per seed
    rgb_teacher = (20.0, 22.0, 21.0)   # differences 10, 9, 14: mean 11, std 2.646, se 1.528
    control = (29.0, 33.0, 33.0)       # differences 1, -2, 2: mean 0.33, crosses 0
    args = []
    for seed in range(3):
        run = tmp_path / f"run{seed}"
        run.mkdir()
        summary = {"status": "finished"}
        for s in settings:
            summary.update({f"fewshot/{s}/acc": student[seed], f"fewshot/{s}/ci95": 0.5,
                            f"fewshot/{s}/q_query": 15, f"fewshot/{s}/vs_teacher_rgb": "better"})
            for model, values in (("teacher_rgb", rgb_teacher), ("student_untrained_teachers", control)):
                summary[f"{model}/fewshot/{s}/acc"] = values[seed]
                summary[f"{model}/fewshot/{s}/ci95"] = 0.5
        (run / "summary.json").write_text(json.dumps(summary))
        (run / "fewshot_trained.json").write_text(json.dumps({"not_evaluated": {}}))
        args += ["demo", str(seed), str(run)]
    result = subprocess.run([sys.executable, str(BENCH / "seeds_table.py"), *args], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line.split(" | ")[0].strip("| "): line for line in result.stdout.splitlines() if line.startswith("|")}
    half = 4.303 * (7 ** 0.5) / 3 ** 0.5  # t_0.975(2) x sample std sqrt(7) / sqrt(3)
    assert f"11.0 +/- {half:.1f}*" in rows["student minus RGB teacher"]
    assert "0.3 +/- " in rows["student minus student from untrained teachers (control)"]
    assert "*" not in rows["student minus student from untrained teachers (control)"]
    assert "32.0 +/- " in rows["student, all three teachers"]
    assert "n/e" in rows["student minus the same ViT, never trained"]  # a model no run evaluated
    twice = subprocess.run([sys.executable, str(BENCH / "seeds_table.py"), *args, *args[:3]],
                           capture_output=True, text=True, timeout=120)
    assert twice.returncode == 2 and "seed 0 given twice" in twice.stderr
