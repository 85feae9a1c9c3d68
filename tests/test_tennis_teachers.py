"""The chosen tennis flow teacher (gin/tennis_strokes/teacher_flow.gin) is the validated try of
gin/tennis_strokes/teacher_tries.gin, and the GPU scale still sets its schedule."""
import sys
from pathlib import Path

import gin

from mmdistill.config import parse_config

ROOT = Path(__file__).resolve().parent.parent


def _value(name):
    """A binding's value, through any chain of macros (%A -> %B -> 60)."""
    value = gin.query_parameter(name)
    while repr(value).startswith("%"):
        value = gin.query_parameter(repr(value))
    return value


def _schedule(files, bindings=()):
    gin.clear_config()
    parse_config(files, list(bindings), finalize=False)
    return {name: _value(name) for name in ("pretrain.modality", "train.epochs", "train.lr")}


def test_the_flow_teacher_file_is_the_chosen_try_and_gpu_scale_overrides_it():
    sys.path.insert(0, str(ROOT))
    import run
    from mmdistill.pipeline import pipeline_settings

    run.import_configurables()
    parse_config(["gin/tennis_strokes/teacher_tries.gin"], finalize=False)
    files, bindings = pipeline_settings()["steps"]["flow_e120_lr4"]
    tried = _schedule(files, bindings)
    chosen = _schedule(["gin/tennis_strokes/teacher_flow.gin"])
    assert chosen == tried == {"pretrain.modality": "flow", "train.epochs": 120, "train.lr": 6e-2}
    default = _schedule(["gin/tennis_strokes/teacher.gin"], ["pretrain.modality = 'flow'"])
    assert default["train.epochs"] != 120  # the choice is a change, not the default restated
    gpu = _schedule(["gin/tennis_strokes/teacher_flow.gin", "gin/tennis_strokes/gpu_scale.gin"])
    assert (gpu["train.epochs"], gpu["train.lr"]) == (200, 6e-3)
    gin.clear_config()
