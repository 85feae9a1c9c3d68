"""evaluate.modalities: each teacher judged on its own modality, on the same clips and episodes."""
import json

import pytest
import torch
from ckpt_factories import write_mmdistill_ckpt

from context_factories import TINY_VIT, bind_tiny_fewshot_data, cpu_context
from mmdistill.models.vit import video_vit
from mmdistill.evaluation import comparison_table, evaluate_stage

@pytest.fixture
def teachers(tmp_path):
    bind_tiny_fewshot_data(tmp_path / "data")
    paths = {}
    for name, channels in (("teacher_rgb", 3), ("teacher_flow", 2), ("teacher_skeleton", 17)):
        torch.manual_seed(channels)
        paths[name] = write_mmdistill_ckpt(tmp_path / f"{name}.ckpt",
                                           {"encoder.": video_vit(in_chans=channels, **TINY_VIT)})
    return paths


def test_each_teacher_is_evaluated_on_its_own_modality_on_the_same_episodes(tmp_path, teachers):
    ctx = cpu_context(tmp_path / "run")
    summary = evaluate_stage(ctx, None, baselines=teachers, cache_features=False,
                             modalities={"teacher_flow": "flow", "teacher_skeleton": "skeleton"})
    for name, modality in (("teacher_rgb", "rgb"), ("teacher_flow", "flow"),
                           ("teacher_skeleton", "skeleton")):
        assert summary[f"evaluated/{name}/modality"] == modality
        assert 0 <= summary[f"{name}/fewshot/2way_1shot/acc"] <= 100
        report = json.loads((ctx.dir / f"fewshot_{name}.json").read_text())
        assert report["num_clips"] == 8 and report["num_classes"] == 2
    # The features differ by modality, the clips and episodes do not: same per-class query counts.
    reports = [json.loads((ctx.dir / f"fewshot_{n}.json").read_text()) for n in teachers]
    queries = {json.dumps(r["settings"][0]["per_class_queries"]) for r in reports}
    assert len(queries) == 1


def test_a_non_rgb_checkpoint_without_its_modality_is_refused_by_name(tmp_path, teachers):
    ctx = cpu_context(tmp_path / "run")
    with pytest.raises(ValueError, match=r"evaluate.modalities = \{'teacher_flow': 'flow'\}"):
        evaluate_stage(ctx, None, baselines={"teacher_flow": teachers["teacher_flow"]},
                       cache_features=False)
    with pytest.raises(ValueError, match="names \\['student'\\], which are not evaluated"):
        evaluate_stage(ctx, None, baselines=teachers, modalities={"student": "flow"})


def test_a_model_given_another_modality_than_its_channels_is_refused_by_name(tmp_path, teachers):
    """An RGB checkpoint mapped to flow would fail deep in the ViT on shapes; it is named first."""
    ctx = cpu_context(tmp_path / "run")
    with pytest.raises(ValueError, match="'teacher_rgb' takes 3 input channels but its modality 'flow'"):
        evaluate_stage(ctx, None, baselines={"teacher_rgb": teachers["teacher_rgb"]},
                       modalities={"teacher_rgb": "flow"}, cache_features=False)


def test_modalities_with_different_clips_are_refused(tmp_path, teachers, monkeypatch):
    import mmdistill.evaluation as stages

    build = stages.build_clip_dataset

    def flow_loses_a_clip(*args, **kwargs):
        dataset = build(*args, **kwargs)
        if kwargs["modalities"] == ["flow"]:
            dataset.clips = dataset.clips[:-1]
        return dataset

    monkeypatch.setattr(stages, "build_clip_dataset", flow_loses_a_clip)
    with pytest.raises(ValueError, match="the flow few-shot clips differ"):
        evaluate_stage(cpu_context(tmp_path / "run"), None, baselines=teachers,
                       cache_features=False, modalities={"teacher_flow": "flow"})


def test_the_comparison_table_names_each_model_modality():
    from types import SimpleNamespace

    class Report:  # what comparison_table reads of a fewshot Report
        results = [SimpleNamespace(setting=SimpleNamespace(name="5way_1shot"))]

        def __getitem__(self, name):
            return SimpleNamespace(accuracy=SimpleNamespace(mean=50.0, ci95=1.0))

    table = comparison_table({"teacher_rgb": Report(), "teacher_flow": Report()},
                             {"teacher_rgb": "rgb", "teacher_flow": "flow"})
    assert "teacher_flow (flow)" in table and "teacher_rgb (rgb)" in table


def test_untrained_modalities_give_a_seeded_floor_per_modality(tmp_path, teachers):
    """evaluate.untrained_modalities: the teacher architecture at its seeded init, read on flow
    and on skeletons, on the same episodes as the teachers; the same weights on every run."""
    bind_tiny_fewshot_data(tmp_path / "data", *(f"encoder/video_vit.{k} = {v!r}"
                                                 for k, v in TINY_VIT.items()))
    summaries = [evaluate_stage(cpu_context(tmp_path / f"run{i}"), None,
                                baselines={"teacher_flow": teachers["teacher_flow"]},
                                modalities={"teacher_flow": "flow"}, cache_features=False,
                                untrained_modalities=("flow", "skeleton")) for i in range(2)]
    first = summaries[0]
    for modality, channels in (("flow", 2), ("skeleton", 17)):
        name = f"untrained_{modality}"
        assert first[f"evaluated/{name}/modality"] == modality
        assert first[f"evaluated/{name}/checkpoint"].endswith(f"{channels} channels)")
        assert summaries[1][f"evaluated/{name}/weights_sha"] == first[f"evaluated/{name}/weights_sha"]
        assert 0 <= first[f"{name}/fewshot/2way_1shot/acc"] <= 100
    assert first["evaluated/untrained_flow/weights_sha"] != first["evaluated/teacher_flow/weights_sha"]
    with pytest.raises(ValueError, match="'untrained_flow', which evaluate.untrained_modalities"):
        evaluate_stage(cpu_context(tmp_path / "clash"), None,
                       baselines={"untrained_flow": teachers["teacher_flow"]},
                       modalities={"untrained_flow": "flow"}, untrained_modalities=("flow",))
