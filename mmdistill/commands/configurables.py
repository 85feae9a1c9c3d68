"""The one list of modules that define gin configurables, imported by a command before it parses
gin, so a misspelled configurable or parameter fails at parse time (exit 2) instead of halfway
through a run. tests/test_imports.py checks that every module with a configurable is listed.
"""
from __future__ import annotations

import importlib

# The modules a dataset is built from: what `python -m mmdistill.data` registers (an experiment
# file's other bindings are skipped and named there).
DATA_MODULES = (
    "mmdistill.data.annotations",  # clip_annotations
    "mmdistill.data.clip_cache",  # clip_cache
    "mmdistill.data.cycled",  # distill_data
    "mmdistill.data.dataset",  # clip_data, data_loader
    "mmdistill.data.heatmaps",  # skeleton_heatmaps
    "mmdistill.data.modalities.specs",  # modality_specs
    "mmdistill.data.modalities.frame_rule",  # frame_rule
    "mmdistill.data.modalities.grid_heatmaps",  # grid_heatmaps
    "mmdistill.data.modalities.variants",  # rgb_spec, flow_spec, skeleton_spec
    "mmdistill.data.modalities.mmcdfsl",  # mmcdfsl_rgb_spec, mmcdfsl_flow_spec, mmcdfsl_pose_spec
    "mmdistill.data.mmcdfsl_sources",  # mmcdfsl_rgb_frames, mmcdfsl_flow_frames, mmcdfsl_pose_frames
    "mmdistill.data.flow_sources",  # flow_frames, flow_array, flow_jpeg
    "mmdistill.data.skeleton_source",  # skeleton_pickle
    "mmdistill.data.sources",  # rgb_frames, rgb_video
    "mmdistill.data.transforms",  # temporal_sampling, spatial_transform
)

MODULES = DATA_MODULES + (
    "mmdistill.demo.cache",  # demo_data_cache
    "mmdistill.demo.writer",  # demo_data
    "mmdistill.eval.appearance",  # colour_histogram
    "mmdistill.eval.classifiers",  # fewshot_logistic
    "mmdistill.eval.fewshot",  # fewshot
    "mmdistill.commands.session",  # wandb_run
    "mmdistill.experiment",  # experiment
    "mmdistill.ckpt.loading",  # pretrained
    "mmdistill.models.decoder",  # mae
    "mmdistill.models.heads",  # cmt_head
    "mmdistill.models.vit",  # video_vit
    "mmdistill.pipeline",  # pipeline
    "mmdistill.evaluation",  # evaluate
    "mmdistill.stages",  # distill, pretrain, validation
    "mmdistill.leakage",  # leakage
    "mmdistill.train.loop",  # train
)


def import_configurables(modules: tuple[str, ...] = MODULES) -> None:
    """Import `modules` (default: all of them), registering their configurables with gin."""
    for name in modules:
        importlib.import_module(name)
