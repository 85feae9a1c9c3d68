"""clip_annotations.exclude: MM-CDFSL's Ego4D `delete` list (configs/data_module/
mm_distill_data_module.yaml:55-62) drops every entry whose `video_id` it lists
(datamodule/dataset/ego4d_unlabel_combined_multimodal_dataset.py:49-54), while the frames are
read by `clip_uid`."""
import json

import gin
import pytest

from mmdistill.data.annotations import AnnotationError, read_annotations


def _ego4d_like(tmp_path):
    """Entries shaped like its ego4d_*.json: {'clips': [{video_id, clip_uid, clip_frame, ...}]}."""
    clips = [{"video_id": video, "clip_uid": f"clip-{video}-{i}", "clip_frame": 10 * i,
              "verb_label": i % 2, "noun_label": 3} for video in ("vid-a", "vid-b", "vid-c")
             for i in range(2 + (video == "vid-b"))]
    path = tmp_path / "ego4d_train.json"
    path.write_text(json.dumps({"version": 1.0, "split": "train", "clips": clips}))
    return path


OPTIONS = dict(entries_key="clips", video_key="clip_uid", start_key="clip_frame", end_key=None,
               label_key=["verb_label", "noun_label"])


def test_exclude_drops_the_listed_videos_entries_and_reports_the_count(tmp_path, capsys):
    path = _ego4d_like(tmp_path)
    everything = read_annotations(path, **OPTIONS)
    clips = read_annotations(path, exclude={"video_id": ["vid-b"]}, **OPTIONS)
    assert len(everything) == 7
    assert [c.video for c in clips] == [c.video for c in everything if "vid-b" not in c.video]
    assert "excluded 3 of 7 entries" in capsys.readouterr().out


def test_a_listed_value_no_entry_holds_is_an_error_naming_it(tmp_path):
    path = _ego4d_like(tmp_path)
    with pytest.raises(ValueError, match=r"\['vid-x'\] \(closest present: \['vid-"):
        read_annotations(path, exclude={"video_id": ["vid-b", "vid-x"]}, **OPTIONS)
    with pytest.raises(ValueError, match="no entry .* has the key 'video_uid'"):
        read_annotations(path, exclude={"video_uid": ["vid-b"]}, **OPTIONS)


@pytest.mark.parametrize("bad", [["vid-b"], {"video_id": "vid-b"}])
def test_a_badly_shaped_exclude_is_refused_with_an_example(tmp_path, bad):
    with pytest.raises(ValueError, match="e.g. clip_annotations.exclude = {'video_id'"):
        read_annotations(_ego4d_like(tmp_path), exclude=bad, **OPTIONS)


def test_a_class_folder_layout_refuses_exclude(tmp_path):
    (tmp_path / "cls").mkdir()
    with pytest.raises(AnnotationError, match="class-folder"):
        read_annotations(tmp_path, exclude={"video": ["x"]})


def test_a_scoped_binding_applies_to_its_scope_only(tmp_path):
    path = _ego4d_like(tmp_path)
    gin.clear_config()
    try:
        gin.parse_config("source/clip_annotations.exclude = {'video_id': ['vid-a']}")
        with gin.config_scope("source"):
            source = read_annotations(path, **OPTIONS)
        with gin.config_scope("unlabeled"):
            target = read_annotations(path, **OPTIONS)
    finally:
        gin.clear_config()
    assert len(source) == 5 and len(target) == 7
