"""gin/mmcdfsl/: every step of each transfer pipeline (Ego4D -> EPIC, MECCANO, WEAR) parses and
runs one tiny step on tiny trees in MM-CDFSL's exact layouts (tests/mmcdfsl_trees.py), with only
the macros pointed at the trees and the model shrunk by bindings; and `python -m mmdistill.data
check --decode` passes for every scope a transfer reads."""
from pathlib import Path

import json

import gin
import numpy as np
import pytest

import mmcdfsl_trees as trees
from context_factories import cpu_context

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("epic", "meccano", "wear")
UNLABELED = {"epic": "epic-55_unlabel.json", "meccano": "meccano_unlabel.json", "wear": "wear_unlabel.json"}
FEWSHOT = {"epic": "epic-55_val.json", "meccano": "meccano_val.json", "wear": "wear_val.json"}
# A tiny ViT on 4 frames; the pose teacher's 56 px / patch 4 grid stays that of RGB at 224 / 16.
TINY = ["video_vit.embed_dim = 32", "video_vit.depth = 1", "video_vit.num_heads = 2",
        "video_vit.num_frames = 4", "temporal_sampling.num_frames = 4",
        "mae.decoder_dim = 16", "mae.decoder_depth = 1", "mae.decoder_heads = 2",
        "pretrain.visualize_clips = 0", "data_loader.batch_size = 2", "data_loader.num_workers = 0",
        "train.epochs = 1", "train.warmup_epochs = 0", "train.log_every = 1", "train.save_ckpt_freq = 1",
        "fewshot.settings = [(2, 1, 1, 2)]", "evaluate.appearance_baseline = False",
        "leakage.allow = True"]  # the tiny trees' few-shot videos are also unlabelled ones


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("mmcdfsl_gin")
    return {dataset: trees.make_tree(base, dataset) for dataset in trees.DATASETS}


def macros(built, target: str, delete: str = "[]") -> list[str]:
    source, tree = built["ego4d"], built[target]
    return [f"SOURCE_ROOT = '{source.root}'", f"SOURCE_LIST = '{source.lists['ego4d_train.json']}'",
            f"TARGET_ROOT = '{tree.root}'", f"TARGET_UNLABELED_LIST = '{tree.lists[UNLABELED[target]]}'",
            f"TARGET_FEWSHOT_LIST = '{tree.lists[FEWSHOT[target]]}'",
            f"EGO4D_DELETE = {delete}",  # the tiny list's videos: an unknown one is an error
            "K400_CHECKPOINT = None", "pretrain.init_patch_embed = 'strict'"]


def fewshot_list_of_four(tree, target: str, folder: Path) -> Path:
    """The tiny labelled list (one clip per class) with each clip again one frame later, so a
    2-way 1-shot 1-query episode can be drawn; same schema, same file name."""
    data = json.loads(tree.lists[FEWSHOT[target]].read_text())
    later = [{**clip, "start_frame": type(clip["start_frame"])(int(clip["start_frame"]) + 1)} for clip in data["clips"]]
    folder.mkdir()
    path = folder / FEWSHOT[target]
    path.write_text(json.dumps({**data, "clips": data["clips"] + later}))
    return path


def steps_of(target: str) -> dict:
    from mmdistill.commands.configurables import import_configurables
    from mmdistill.config import parse_config
    from mmdistill.pipeline import pipeline_settings

    import_configurables()
    gin.clear_config()
    parse_config([REPO / f"gin/mmcdfsl/ego4d_to_{target}.gin"], finalize=False)
    return pipeline_settings()["steps"]


@pytest.mark.parametrize("target", TARGETS)
def test_every_step_of_a_transfer_runs_one_tiny_step_on_its_layout(built, clean_gin, tmp_path, target):
    from mmdistill.config import parse_config
    from mmdistill.evaluation import evaluate_stage
    from mmdistill.stages import distill_stage, pretrain_stage

    steps = steps_of(target)
    assert list(steps) == ["pretrain_rgb", "pretrain_flow", "pretrain_pose", "distill", "evaluate"]
    checkpoints = {}
    for step, (files, bindings) in steps.items():
        gin.clear_config()
        extra = [f"{name} = '{path}'" for name, path in checkpoints.items()]
        parse_config([REPO / f for f in files], [*bindings, *macros(built, target), *TINY, *extra], finalize=False)
        assert gin.query_parameter("video_vit.size") == "small" and gin.query_parameter("temporal_sampling.sampling_rate") \
            == trees.RATES[target]
        ctx = cpu_context(tmp_path / step)
        if step.startswith("pretrain"):
            modality = step.split("_")[1]
            assert gin.query_parameter("pretrain.modality") == modality
            checkpoints[f"{modality.upper()}_TEACHER"] = pretrain_stage(ctx, None)
        elif step == "distill":
            assert gin.query_parameter("distill_data.epoch_length") == "source"
            checkpoints["STUDENT"] = distill_stage(ctx, None)
        else:
            gin.bind_parameter("fewshot_data/clip_data.annotations",
                               str(fewshot_list_of_four(built[target], target, tmp_path / "fewshot")))
            results = evaluate_stage(ctx, checkpoints["STUDENT"])
            for model in ("", "teacher_rgb/"):  # the student and the RGB teacher, same episodes
                assert 0.0 <= results[f"{model}fewshot/2way_1shot/acc"] <= 100.0  # percent
                assert f"{model}fewshot/2way_1shot/view/masked1/acc" in results  # two masked query views
            continue
        losses = [row["train/loss"] for _, row in ctx.logger.history if "train/loss" in row]
        assert losses and np.isfinite(losses).all(), step
    assert all(Path(path).is_file() for path in checkpoints.values())


def test_the_shipped_settings_are_its_settings(clean_gin):
    """Without the test's bindings: ViT-S, the pose teacher at 56 px / patch 4, its rates and its
    protocol (docs/parity_mmcdfsl.md sections 3, 7, 8; configs/data_module/dataset/*.yaml:7)."""
    from mmdistill.config import parse_config

    for target in TARGETS:
        steps = steps_of(target)
        for step, (files, bindings) in steps.items():
            gin.clear_config()
            parse_config([REPO / f for f in files], bindings, finalize=False)
            assert (gin.query_parameter("video_vit.size"), gin.query_parameter("video_vit.num_frames"),
                    gin.query_parameter("temporal_sampling.sampling_rate"),
                    gin.query_parameter("source/temporal_sampling.sampling_rate")) == \
                ("small", 16, trees.RATES[target], trees.RATES["ego4d"]), (target, step)
        assert ("encoder/video_vit.patch_size = 4" in steps["pretrain_pose"][1])
        assert gin.query_parameter("fewshot.settings") == [(5, 5, 15, 600), (5, 1, 15, 600)]
        assert gin.query_parameter("fewshot.mask_views") == 2


@pytest.mark.parametrize("target, scope", [(t, s) for t in TARGETS for s in ("source", "unlabeled", "fewshot_data")])
def test_the_data_check_passes_for_every_scope_a_transfer_reads(built, clean_gin, capsys, tmp_path, target, scope):
    from mmdistill.commands.data import main

    # The README's way: the macros in a gin file of the user's, after the pipeline's.
    paths = tmp_path / "my_paths.gin"
    paths.write_text("\n".join(macros(built, target, "['vid-b']")) + "\n")
    rc = main(["check", "--gin_file", str(REPO / f"gin/mmcdfsl/ego4d_to_{target}.gin"), "--gin_file", str(paths),
               "--scope", scope, "--decode", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "modalities: rgb, flow, pose" in out  # every modality's files, decoded
    if scope == "source":
        assert "excluded 1 of 2 entries" in out  # its delete list, by video_id
