import json
from pathlib import Path

import gin
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mmdistill.eval.features import MASKED, POOLED, FeatureBank
from mmdistill.eval.fewshot import FewShotSetting, evaluate, run_fewshot
from mmdistill.tracking import MemoryLogger
from test_eval_features import TinyClips, TinyVideoModel


def synthetic_bank(counts, dim=16, spread=20.0, noise=1.0, seed=0, mask_views=0, heads=()):
    """Clips around one random centre per class; `spread` >> `noise` is linearly separable."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    centres = torch.randn(len(counts), dim, generator=g) * spread

    def view():
        return centres[labels] + noise * torch.randn(len(labels), dim, generator=g)

    views = {POOLED: view()}
    if mask_views:
        views[MASKED] = torch.stack([view() for _ in range(mask_views)])
    for h in heads:
        views[f"cmt_{h}"] = view()
    names = [f"c{c}" for c in range(len(counts))]
    return FeatureBank(labels, names, views, torch.arange(len(labels)))


def test_separable_features_reach_100_percent_and_random_ones_chance():
    separable = evaluate(synthetic_bank([20] * 6), [(5, 1, 15, 30)])
    assert separable["5way_1shot"].accuracy.mean == 100.0
    assert separable["5way_1shot"].accuracy.std == 0.0
    random = evaluate(synthetic_bank([20] * 6, spread=0.0), [(5, 1, 15, 200)])
    assert abs(random["5way_1shot"].accuracy.mean - 20.0) < 2.0


@pytest.mark.parametrize("classifier", ["logistic", "centroid", "cosine_nn"])
def test_n_way_other_than_five(classifier):
    report = evaluate(synthetic_bank([8] * 12), [(3, 2, 4, 20), (10, 1, 5, 20)], classifier)
    assert report["3way_2shot"].accuracy.mean == 100.0
    assert report["10way_1shot"].accuracy.mean == 100.0
    noise = evaluate(synthetic_bank([8] * 12, spread=0.0), [(10, 1, 5, 100)], classifier)
    assert abs(noise["10way_1shot"].accuracy.mean - 10.0) < 2.0


def test_statistics_are_the_episode_formulas():
    result = evaluate(synthetic_bank([20] * 6, spread=1.0), [(5, 1, 15, 50)])["5way_1shot"]
    per_episode = result.episode_accuracy
    assert per_episode.shape == (50,)
    assert result.accuracy.mean == pytest.approx(per_episode.mean())
    assert result.accuracy.std == pytest.approx(np.std(per_episode))
    assert result.accuracy.se == pytest.approx(np.std(per_episode) / np.sqrt(50))
    assert result.accuracy.ci95 == pytest.approx(1.96 * result.accuracy.se)


def test_masked_ensemble_averages_query_views_fitted_on_masked_view_zero():
    bank = synthetic_bank([20] * 6, spread=1.0, noise=1.0, mask_views=2)
    report = evaluate(bank, [(5, 1, 15, 40)])
    result = report["5way_1shot"]
    assert result.ensemble_members == ["masked0", "masked1"]
    assert "5way_1shot ensemble = mean probability of masked0 + masked1" in report.table()
    assert set(result.views) == {"pooled", "masked0", "masked1"}
    # the ensemble is not just one of its members
    accs = {v: s.mean for v, s in result.views.items()}
    assert result.accuracy.mean not in (accs["masked0"], accs["masked1"])


def test_head_views_join_the_ensemble_only_when_asked():
    bank = synthetic_bank([20] * 6, spread=1.0, heads=["flow", "skeleton"])
    plain = evaluate(bank, [(5, 1, 15, 20)], "centroid")["5way_1shot"]
    assert plain.ensemble_members == ["pooled"]
    assert plain.accuracy.mean == plain.views["pooled"].mean
    assert set(plain.views) == {"pooled", "cmt_flow", "cmt_skeleton"}
    joined = evaluate(bank, [(5, 1, 15, 20)], "centroid", ensemble_heads=True)["5way_1shot"]
    assert joined.ensemble_members == ["pooled", "cmt_flow", "cmt_skeleton"]
    with pytest.raises(ValueError, match="no CMT head views"):
        evaluate(synthetic_bank([20] * 6), [(5, 1, 15, 5)], ensemble_heads=True)


def test_per_class_accuracy_and_exclusion_report():
    bank = synthetic_bank([20, 20, 20, 20, 20, 4, 10], spread=1.0)
    report = evaluate(bank, [(5, 1, 15, 40)])
    result = report["5way_1shot"]
    assert result.excluded == {"c5": 4, "c6": 10}
    assert set(result.per_class) == {"c0", "c1", "c2", "c3", "c4"}
    # each class is in every episode (5 eligible of 5 drawn), 15 queries each time
    assert all(n == 40 * 15 for n in result.per_class_queries.values())
    pooled = np.mean(list(result.per_class.values()))
    assert pooled == pytest.approx(result.accuracy.mean)
    assert "c5 (4), c6 (10)" in report.table()
    with pytest.raises(ValueError, match="only 5 qualify"):
        evaluate(bank, [(6, 1, 15, 10)])


def test_chunking_does_not_change_results():
    bank = synthetic_bank([20] * 6, spread=1.0)
    a = evaluate(bank, [(5, 1, 15, 12)], episode_chunk=5)["5way_1shot"]
    b = evaluate(bank, [(5, 1, 15, 12)], episode_chunk=1000)["5way_1shot"]
    assert np.allclose(a.episode_accuracy, b.episode_accuracy)


def test_report_summary_aliases_rows_and_json(tmp_path):
    bank = synthetic_bank([20] * 6, spread=1.0)
    report = evaluate(bank, [(5, 1, 15, 20), (5, 5, 10, 10)], "centroid", seed=3)
    summary = report.as_summary()
    first = report["5way_1shot"].accuracy
    assert summary["top1_action_ensemble"] == first.mean == summary["fewshot/5way_1shot/acc"]
    assert summary["top1_action_ensemble_std"] == first.std
    assert summary["top1_action_ensemble_std_error"] == first.se
    assert summary["fewshot/5way_5shot/episodes"] == 10
    assert summary["fewshot/5way_5shot/ci95"] == report["5way_5shot"].accuracy.ci95
    assert "fewshot/5way_1shot/class/c0/acc" in summary
    assert all(isinstance(v, (int, float)) for v in summary.values())
    columns, rows = report.rows()
    assert columns[:2] == ["setting", "n_way"] and len(rows) == 2 * 2  # ensemble + pooled each
    assert rows[0][columns.index("view")] == "ensemble"
    logger = MemoryLogger()
    report.log_to(logger)
    assert logger.summary_values == summary and set(logger.tables) == {"fewshot",
                                                                        "fewshot_per_class"}
    report.write_json(tmp_path / "summary.json")
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["settings"][1]["q_query"] == 10 and saved["conventions"]["std_ddof"] == 0
    table = report.table()
    assert "5way_1shot" in table and "5way_5shot" in table and "ddof=0" in table


def test_settings_are_validated():
    with pytest.raises(ValueError, match="positive integer"):
        FewShotSetting(5, 0)
    with pytest.raises(ValueError, match="collide"):
        evaluate(synthetic_bank([20] * 6), [(5, 1, 15, 5), (5, 1, 10, 5)])
    assert FewShotSetting.coerce({"n_way": 3, "k_shot": 2}) == FewShotSetting(3, 2, 15, 400)


def test_gin_entry_extracts_once_caches_and_logs(tmp_path):
    torch.manual_seed(0)
    model, data = TinyVideoModel(), TinyClips((6, 6, 6, 6))
    loader = DataLoader(data, batch_size=8)
    gin.parse_config("""
        fewshot.settings = [(3, 1, 2, 25), (2, 2, 3, 25)]
        fewshot.classifier = 'centroid'
    """)
    logger = MemoryLogger()
    first = run_fewshot(model, loader, cache_dir=tmp_path / "cache", logger=logger,
                        summary_path=tmp_path / "summary.json", progress=False)
    assert model.forwards == 24  # every clip once, for both settings
    assert len(list((tmp_path / "cache").glob("features-*.pt"))) == 1
    again = run_fewshot(model, loader, cache_dir=tmp_path / "cache", seed=5, progress=False)
    assert model.forwards == 24  # cache hit: a new episode seed needs no forward pass
    assert [r.setting.name for r in again.results] == ["3way_1shot", "2way_2shot"]
    assert [r.setting.name for r in first.results] == [r.setting.name for r in again.results]
    assert "top1_action_ensemble" in logger.summary_values
    assert (tmp_path / "summary.json").is_file()
    with torch.no_grad():
        model.fc_norm.weight.add_(1.0)  # other weights -> other key -> new extraction
    run_fewshot(model, loader, cache_dir=tmp_path / "cache", progress=False)
    assert model.forwards == 48


def test_report_records_the_logistic_feature_normalisation(tmp_path):
    bank = synthetic_bank([20] * 6, spread=1.0)
    raw = evaluate(bank, [(5, 1, 15, 30)], "logistic")
    assert raw.classifier_options["l2_normalize"] is False  # the default: features as given
    assert raw.as_summary()["fewshot/classifier/l2_normalize"] is False
    assert "classifier logistic (C=1.0, max_iter=1000, tolerance=1e-06, l2_normalize=False)" \
        in raw.table()
    gin.parse_config("fewshot_logistic.l2_normalize = True")
    normalised = evaluate(bank, [(5, 1, 15, 30)], "logistic")
    assert normalised.as_summary()["fewshot/classifier/l2_normalize"] is True
    normalised.write_json(tmp_path / "summary.json")
    assert json.loads((tmp_path / "summary.json").read_text())["classifier_options"] == {
        "C": 1.0, "max_iter": 1000, "tolerance": 1e-6, "l2_normalize": True}
    # an explicit override beats gin, and the switch reaches the classifier
    again_raw = evaluate(bank, [(5, 1, 15, 30)], "logistic",
                         classifier_overrides={"l2_normalize": False})
    assert np.array_equal(again_raw["5way_1shot"].episode_accuracy,
                          raw["5way_1shot"].episode_accuracy)
    assert not np.array_equal(normalised["5way_1shot"].episode_accuracy,
                              raw["5way_1shot"].episode_accuracy)
    with pytest.raises(ValueError, match="has no option"):
        evaluate(bank, [(5, 1, 15, 5)], "centroid", classifier_overrides={"l2_normalize": True})


def test_protocol_gin_fits_the_logistic_regression_on_raw_features():
    gin.parse_config_file(str(Path(__file__).resolve().parents[1] / "gin/base/fewshot_protocol.gin"))
    assert gin.query_parameter("fewshot_logistic.l2_normalize") is False
    report = evaluate(synthetic_bank([20] * 6), [(5, 1, 15, 5)], gin.query_parameter(
        "fewshot.classifier"))
    assert report.classifier_options["l2_normalize"] is False


def test_models_on_the_same_clips_share_one_draw_of_episodes(monkeypatch):
    """A comparison evaluates many models on the same clips: each setting's episodes are drawn once
    (and are those a fresh draw gives); other labels, groups or seeds draw their own."""
    import mmdistill.eval.fewshot as fewshot_module
    fewshot_module._shared_episodes.cache_clear()
    draws = []
    real = fewshot_module.sample_episodes
    monkeypatch.setattr(fewshot_module, "sample_episodes", lambda *a, **k: draws.append(a) or real(*a, **k))
    groups = [f"g{i % 4}" for i in range(6 * 12)]
    first = evaluate(synthetic_bank([12] * 6, seed=0), [(5, 1, 3, 20)], groups=groups)
    second = evaluate(synthetic_bank([12] * 6, seed=1, spread=0.0), [(5, 1, 3, 20)], groups=groups)
    assert len(draws) == 2  # standard and recording-disjoint, once for both models
    assert first["5way_1shot"].accuracy.mean == 100.0 and second["5way_1shot"].accuracy.mean < 40.0
    fresh = real(synthetic_bank([12] * 6).labels, [f"c{c}" for c in range(6)], 5, 1, 3, 20, 0, groups=groups)
    shared = fewshot_module._shared_episodes(tuple(synthetic_bank([12] * 6).labels.tolist()),
                                             tuple(f"c{c}" for c in range(6)), 5, 1, 3, 20, 0, tuple(groups))
    assert torch.equal(fresh.support, shared.support) and torch.equal(fresh.query, shared.query)
    evaluate(synthetic_bank([12] * 6), [(5, 1, 3, 20)], seed=1)
    evaluate(synthetic_bank([12] * 5 + [11]), [(5, 1, 3, 20)])
    assert len(draws) == 4
