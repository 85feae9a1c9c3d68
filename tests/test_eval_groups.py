"""Recording-disjoint episodes: the groups file, the sampler's property, the report."""
import json

import pytest
import torch

from mmdistill.eval.episodes import TooFewClasses, sample_episodes
from mmdistill.eval.fewshot import evaluate
from mmdistill.data.groups import GroupsError, clip_groups, read_groups_file
from test_eval_fewshot import synthetic_bank


def _world(sizes_per_class):
    """labels and groups: class c has groups of the given sizes (group names unique per class)."""
    labels, groups = [], []
    for c, sizes in enumerate(sizes_per_class):
        for g, size in enumerate(sizes):
            labels += [c] * size
            groups += [f"c{c}g{g}"] * size
    return torch.tensor(labels), groups


@pytest.mark.parametrize("seed", range(25))
def test_no_episode_puts_one_group_on_both_sides(seed):
    rng = torch.Generator().manual_seed(seed)
    # Random group sizes per class; classes 5 and 6 have one group only (never drawable), class 7
    # has two groups that cannot give K=5 support and Q=3 queries apart (sizes 4 and 4).
    sizes = [torch.randint(1, 7, (int(torch.randint(2, 6, (1,), generator=rng)),),
                           generator=rng).tolist() + [6, 6] for _ in range(5)]
    sizes += [[12], [30], [4, 4]]
    labels, groups = _world(sizes)
    names = [f"c{c}" for c in range(len(sizes))]
    for k_shot in (1, 5):
        ep = sample_episodes(labels, names, 5, k_shot, 3, 60, seed=seed, groups=groups)
        assert set(ep.excluded) >= {"c5", "c6"}
        if k_shot == 5:
            assert "c7" in ep.excluded
        assert ep.groups_per_class["c5"] == 1 and ep.groups_per_class["c7"] == 2
        for e in range(len(ep)):
            for j in range(5):
                support = ep.support[e][ep.support_labels[e] == j].tolist()
                query = ep.query[e][ep.query_labels[e] == j].tolist()
                assert len(support) == k_shot and len(query) == 3
                assert {groups[i] for i in support}.isdisjoint({groups[i] for i in query})
                assert {labels[i].item() for i in support + query} == {ep.classes[e, j].item()}
            drawn = {names[c] for c in ep.classes[e].tolist()}
            assert drawn.isdisjoint(ep.excluded)


def _recordings_of_several_classes(seed, classes=6):
    """labels and groups where each recording holds clips of several classes (the demo world)."""
    rng = torch.Generator().manual_seed(seed)
    labels, groups = [], []
    for r in range(int(torch.randint(4, 9, (1,), generator=rng))):
        for c in range(classes):
            n = int(torch.randint(0, 4, (1,), generator=rng))
            labels += [c] * n
            groups += [f"rec{r}"] * n
    return torch.tensor(labels), groups


@pytest.mark.parametrize("seed", range(25))
def test_recordings_of_several_classes_never_give_support_and_query_of_one_recording(seed):
    labels, groups = _recordings_of_several_classes(seed)
    names = [f"c{c}" for c in range(6)]
    for k_shot in (1, 3):
        try:
            ep = sample_episodes(labels, names, 3, k_shot, 2, 40, seed=seed, groups=groups)
        except TooFewClasses:
            continue  # no split suits some draw of classes: reported, never merged
        for e in range(len(ep)):
            support, query = ep.support[e].tolist(), ep.query[e].tolist()
            # Across the whole episode, not only within a class.
            assert {groups[i] for i in support}.isdisjoint({groups[i] for i in query})
            for j in range(3):
                s = ep.support[e][ep.support_labels[e] == j].tolist()
                q = ep.query[e][ep.query_labels[e] == j].tolist()
                assert len(s) == k_shot and len(q) == 2
                assert {labels[i].item() for i in s + q} == {ep.classes[e, j].item()}


def test_recordings_of_several_classes_drawn_often_enough():
    """Four recordings, each with 5 clips of every class (the demo's fewshot.json): 1 recording
    gives the support, the 3 others the 15 queries, at 1-shot and 5-shot."""
    labels = torch.tensor([c for r in range(4) for c in range(6) for _ in range(5)])
    groups = [f"r{r}" for r in range(4) for c in range(6) for _ in range(5)]
    for k_shot in (1, 5):
        ep = sample_episodes(labels, [f"c{c}" for c in range(6)], 5, k_shot, 15, 50, groups=groups)
        assert ep.groups_per_class == {f"c{c}": 4 for c in range(6)}
        for e in range(len(ep)):
            assert len({groups[i] for i in ep.support[e].tolist()}) == 1
            assert len({groups[i] for i in ep.query[e].tolist()}) == 3
    # Three recordings cannot give 15 queries apart from the support's recording.
    with pytest.raises(TooFewClasses, match="different groups"):
        sample_episodes(labels[:90], [f"c{c}" for c in range(6)], 5, 1, 15, 5, groups=groups[:90])
    # Each class can be split on its own, but not both at once: a's support recording is b's
    # only query recording and the other way round.
    labels = torch.tensor([0] * 16 + [1] * 16)
    groups = ["r0"] + ["r1"] * 15 + ["r1"] + ["r0"] * 15
    with pytest.raises(TooFewClasses, match="span classes"):
        sample_episodes(labels, ["a", "b"], 2, 1, 15, 3, groups=groups)


def test_too_few_groups_raise_and_list_the_classes():
    labels, groups = _world([[10, 10], [20], [20], [20], [20]])
    with pytest.raises(TooFewClasses, match="groups per class") as err:
        sample_episodes(labels, ["a", "b", "c", "d", "e"], 5, 1, 3, 5, groups=groups)
    assert "'b': 20" in str(err.value)
    # Without groups the same clips give episodes: nothing is merged, just not disjoint.
    assert len(sample_episodes(labels, ["a", "b", "c", "d", "e"], 5, 1, 3, 5)) == 5


def test_groups_do_not_change_the_standard_episodes():
    labels, groups = _world([[6, 6]] * 6)
    names = [f"c{c}" for c in range(6)]
    a = sample_episodes(labels, names, 5, 1, 3, 20, seed=3)
    bank = synthetic_bank([12] * 6)
    report = evaluate(bank, [(5, 1, 3, 20)], "centroid", groups=groups)
    plain = evaluate(bank, [(5, 1, 3, 20)], "centroid")
    assert [r.setting.name for r in report.results] == ["5way_1shot", "5way_1shot_disjoint"]
    assert report["5way_1shot"].accuracy == plain["5way_1shot"].accuracy
    assert report.groups_per_class == {f"c{c}": 2 for c in range(6)}
    assert a.groups_per_class is None


def test_a_listed_disjoint_setting_replaces_the_twin():
    bank = synthetic_bank([12] * 6)
    groups = [f"{c}_{i % 3}" for i, c in enumerate(bank.labels.tolist())]
    listed = {"n_way": 5, "k_shot": 5, "q_query": 2, "episodes": 10, "group_disjoint": True}
    report = evaluate(bank, [(5, 5, 6, 10), listed], "centroid", groups=groups)
    assert [r.setting.name for r in report.results] == ["5way_5shot", "5way_5shot_disjoint"]
    assert report["5way_5shot_disjoint"].setting.q_query == 2
    assert report["5way_5shot"].setting.q_query == 6


def test_disjoint_setting_without_enough_classes_is_reported_not_evaluated():
    bank = synthetic_bank([12] * 6)
    groups = [f"g{c}" for c in bank.labels.tolist()]  # one group per class
    report = evaluate(bank, [(5, 1, 3, 10)], "centroid", groups=groups)
    assert [r.setting.name for r in report.results] == ["5way_1shot"]
    assert "5way_1shot_disjoint" in report.not_evaluated
    assert "not evaluated" in report.table()
    summary = report.as_summary()  # summary.json and W&B say why, not only the console
    assert summary["fewshot/5way_1shot_disjoint/not_evaluated"] == report.not_evaluated["5way_1shot_disjoint"]
    assert "fewshot/5way_1shot_disjoint/acc" not in summary and "fewshot/5way_1shot/acc" in summary


def test_scene_shared_within_a_recording_is_what_disjoint_episodes_remove():
    """Features = recording identity only: standard episodes find the class from the shared
    recording, group-disjoint ones get nothing from it (every query is as far from every centroid,
    so no better than chance)."""
    labels, groups = _world([[5, 5, 5, 5]] * 6)
    recordings = sorted(set(groups))
    codes = torch.eye(len(recordings))[[recordings.index(g) for g in groups]]
    from mmdistill.eval.features import POOLED, FeatureBank
    bank = FeatureBank(labels, [f"c{c}" for c in range(6)], {POOLED: codes * 10},
                       torch.arange(len(labels)))
    report = evaluate(bank, [(5, 5, 5, 100)], classifier="centroid", groups=groups)
    assert report["5way_5shot"].accuracy.mean > 35
    assert report["5way_5shot_disjoint"].accuracy.mean <= 25


def test_groups_file_is_read_and_checked(tmp_path):
    path = tmp_path / "groups.json"
    path.write_text(json.dumps({"how": "by hand", "groups": {"r1": ["a/a1", "a/a2"], "r2": ["b/b1"]}}))
    assert read_groups_file(path) == {"a/a1": "r1", "a/a2": "r1", "b/b1": "r2"}
    assert clip_groups(["b/b1", "a/a1"], groups_file=path) == ["r2", "r1"]
    with pytest.raises(GroupsError, match="no group.*'c/c9'"):
        clip_groups(["a/a1", "c/c9"], groups_file=path)
    path.write_text(json.dumps({"groups": {"r1": ["a/a1"], "r2": ["a/a1", "b/b1"]}}))
    with pytest.raises(GroupsError, match=r"a/a1 \(r1, r2\)"):
        read_groups_file(path)
    path.write_text(json.dumps({"r1": ["a/a1"]}))
    with pytest.raises(GroupsError, match="expected"):
        read_groups_file(path)
    with pytest.raises(GroupsError, match="does not exist"):
        read_groups_file(tmp_path / "missing.json")


def test_group_by_video_and_folder():
    assert clip_groups(["P01/P01_01", "P01/P01_02"], group_by="video") == ["P01/P01_01", "P01/P01_02"]
    assert clip_groups(["P01/P01_01", "P01/P01_02"], group_by="video_folder") == ["P01", "P01"]
    with pytest.raises(GroupsError, match="inside folders"):
        clip_groups(["x"], group_by="video_folder")
    with pytest.raises(ValueError, match="not both"):
        clip_groups(["x"], group_by="video", groups_file="g.json")
    assert clip_groups(["x"]) is None


def test_data_check_reports_groups_per_class(tmp_path, capsys):
    import gin
    from data_factories import make_dataset
    from mmdistill.data.__main__ import main

    data = make_dataset(tmp_path, videos=("v0", "v1", "v2"), labels=("hit", "miss"), events_per_video=2)
    small = ["--gin_param", "spatial_transform.short_side = 24", "--gin_param",
             "spatial_transform.crop_size = (24, 24)", "--gin_param", "temporal_sampling.num_frames = 4",
             "--quiet", "--modalities", "rgb"]
    try:
        assert main(["check", "--annotations", str(data["annotations"]), "--group_by", "video"] + small) == 0
        out = capsys.readouterr().out
        assert "groups (group_by video): 3 over 6 clips; groups per class: hit 3, miss 3" in out
        assert "groups holding clips of several classes: 3" in out
        groups = tmp_path / "groups.json"
        groups.write_text(json.dumps({"groups": {"r0": ["v0", "v1"]}}))
        with pytest.raises(GroupsError, match=r"no group.*\['v2'\]"):
            main(["check", "--annotations", str(data["annotations"]), "--groups_file", str(groups)] + small)
    finally:
        gin.clear_config()
