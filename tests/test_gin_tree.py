"""The shipped gin tree stays compact: includes at most 3 deep, every pipeline step parses (its
files plus bindings), and one file per experiment family sets its learning rates."""
import re
import sys
from pathlib import Path

import gin
import pytest

from mmdistill.config import parse_config

ROOT = Path(__file__).resolve().parent.parent
GIN = ROOT / "gin"
INCLUDE = re.compile(r"^include\s+['\"]([^'\"]+)['\"]", re.M)
PIPELINES = ["gin/demo.gin", "gin/tennis_strokes.gin", "gin/tennis_strokes_synthetic.gin",
             "gin/tennis_strokes_gpu.gin", "gin/mmcdfsl/ego4d_to_epic.gin",
             "gin/mmcdfsl/ego4d_to_meccano.gin", "gin/mmcdfsl/ego4d_to_wear.gin",
             "gin/tennis_strokes/teacher_tries.gin"]


def _depth(path: Path, seen=()) -> int:
    """Longest include chain below `path` (a file including nothing: 0)."""
    assert path not in seen, f"include cycle through {path}"
    children = [ROOT / name for name in INCLUDE.findall(path.read_text())]
    return max((1 + _depth(child, (*seen, path)) for child in children), default=0)


def test_includes_are_at_most_three_deep():
    depths = {str(p.relative_to(ROOT)): _depth(p) for p in GIN.rglob("*.gin")}
    assert max(depths.values()) == 3  # the measure sees real chains
    assert not {p: d for p, d in depths.items() if d > 3}


def test_a_chain_of_four_includes_counts_as_four(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    for i in range(4):
        (tmp_path / f"{i}.gin").write_text(f"include '{i + 1}.gin'\n")
    (tmp_path / "4.gin").write_text("")
    assert _depth(tmp_path / "0.gin") == 4


def _learning_rate_files(paths) -> set[str]:
    return {str(p.relative_to(ROOT)) for p in paths
            if re.search(r"^(train\.lr|[A-Z_]*LR)\s*=\s*[0-9]", p.read_text(), re.M)}


def test_each_experiment_family_sets_its_learning_rates_in_one_file():
    """The base recipes (gin/base/) hold the recipes' own rates; a family overrides them once."""
    families = {
        "demo": [GIN / "demo.gin", *GIN.glob("demo/*.gin")],
        "tennis_strokes (CPU, both settings)": [
            GIN / "tennis_strokes.gin", GIN / "tennis_strokes_synthetic.gin",
            *(p for p in GIN.glob("tennis_strokes/*.gin") if p.name != "gpu_scale.gin")],
        "tennis_strokes_gpu": [GIN / "tennis_strokes_gpu.gin", GIN / "tennis_strokes/gpu_scale.gin"],
        "mmcdfsl": [*GIN.glob("mmcdfsl/*.gin")],
    }
    found = {name: _learning_rate_files(paths) for name, paths in families.items()}
    assert found == {"demo": {"gin/demo/common.gin"},
                     "tennis_strokes (CPU, both settings)": {"gin/tennis_strokes/common.gin"},
                     "tennis_strokes_gpu": {"gin/tennis_strokes/gpu_scale.gin"},
                     "mmcdfsl": {"gin/mmcdfsl/common.gin"}}


@pytest.mark.parametrize("pipeline_file", PIPELINES)
def test_every_pipeline_step_parses_as_files_plus_bindings(pipeline_file):
    sys.path.insert(0, str(ROOT))
    import run
    from mmdistill.pipeline import pipeline_settings

    run.import_configurables()
    parse_config([pipeline_file], finalize=False)
    steps = pipeline_settings()["steps"]
    assert steps and all(files for files, _ in steps.values())
    for step, (files, bindings) in steps.items():
        gin.clear_config()
        parse_config(files, bindings, finalize=False)
        assert gin.query_parameter("experiment.task") in ("pretrain", "distill", "evaluate"), step
