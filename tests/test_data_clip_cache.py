"""The decoded-clip cache (clip_data.cache_dir): the same clips as reading the files, entries keyed
by what produced them, written atomically under a lock."""
import multiprocessing
import os
import time
from pathlib import Path

import gin
import numpy as np
import pytest
import torch
from data_factories import make_dataset, write_frames

from mmdistill.commands.data import main as data_main
from mmdistill.data import clip_cache
from mmdistill.data.clip_cache import ClipCache, OpenArrays, _locked, process_open_arrays
from mmdistill.data.dataset import build_clip_dataset, build_loader
from mmdistill.data.device_batches import finish_batch, finish_item, heatmap_drawer
from mmdistill.data.masking import tube_mask

SETTINGS = ["temporal_sampling.num_frames = 4", "temporal_sampling.sampling_rate = 2",
            "spatial_transform.short_side = 20", "spatial_transform.crop_size = (16, 24)",
            ]


@pytest.fixture
def data(tmp_path):
    # Frames 30x40 are resized to 20x27 (INTER_AREA); flow at half their size is resized and
    # rescaled; the skeleton is in another resolution too: every resize path is exercised.
    return make_dataset(tmp_path / "data", videos=("v0", "v1", "v2"), num_frames=12, size=(30, 40),
                        flow_size=(15, 20), skeleton_shape=(60, 80), events_per_video=3)


def _dataset(data, cache_dir=None, mode="train", extra=()):
    gin.clear_config()
    gin.parse_config(SETTINGS + list(extra))
    mask = (tube_mask(num_frames=4, input_size=(16, 24), patch_size=8, ratio=0.5)
            if mode == "train" else None)
    return build_clip_dataset(data["annotations"], mode=mode, mask=mask, cache_dir=cache_dir)


def _assert_same_clips(plain, cached, epochs=(0, 1, 2)):
    """Items as models see them (finished by the device stage, here on the CPU)."""
    for epoch in epochs:
        for index in range(len(plain)):
            want = finish_item(plain[(epoch, index)], plain)
            got = finish_item(cached[(epoch, index)], cached)
            assert sorted(got) == sorted(want)
            assert got["rgb"].dtype == torch.float32 and torch.equal(got["rgb"], want["rgb"])  # bit for bit
            assert torch.equal(got["skeleton"], want["skeleton"])
            assert "visible_index" not in want or torch.equal(got["visible_index"], want["visible_index"])
            assert (got["video"], got["start"], got["label"]) == (want["video"], want["start"], want["label"])
            step = cached.cache.video(cached, want["video"]).flow_step("flow")
            assert 0 < step < 0.2
            assert (got["flow"] - want["flow"]).abs().max() <= step / 2 + 1e-5


@pytest.mark.parametrize("finish_on", ["device", "loader"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_cached_clips_equal_the_files(data, tmp_path, mode, finish_on):
    plain = _dataset(data, mode=mode)
    cached = _dataset(data, tmp_path / "cache", mode=mode, extra=[f"clip_cache.finish_on = '{finish_on}'"])
    _assert_same_clips(plain, cached)
    shipped = cached[0]
    assert ("rgb_quantised" in shipped) == (finish_on == "device")
    if finish_on == "device":  # the loader ships bytes, not floats
        assert shipped["rgb_quantised"].dtype == torch.uint8 and shipped["flow_quantised"].dtype == torch.int8
    first = cached[(0, 0)]
    changed = [not torch.equal(finish_item(cached[(epoch, 0)], cached)["rgb"], finish_item(first, cached)["rgb"])
               for epoch in range(1, 6)]
    assert any(changed) == (mode == "train")  # crop and flip still change per epoch when training


def test_a_loader_batch_of_cached_clips_equals_the_files(data, tmp_path):
    batches = []
    for cache_dir in (None, tmp_path / "cache"):
        dataset = _dataset(data, cache_dir)
        loader = build_loader(dataset, batch_size=3, shuffle=True, num_workers=0, seed=0, pin_memory=False)
        batches.append([finish_batch(batch, "cpu", heatmap_drawer(dataset)) for batch in loader])
    for want, got in zip(*batches):
        assert torch.equal(got["rgb"], want["rgb"]) and torch.equal(got["visible_index"], want["visible_index"])
        assert (got["flow"] - want["flow"]).abs().max() < 0.1


def test_flow_is_within_half_a_quantisation_step_and_int16_is_finer(data, tmp_path):
    plain = _dataset(data, mode="eval")
    steps = {}
    for dtype in ("int8", "int16"):
        cached = _dataset(data, tmp_path / dtype, mode="eval", extra=[f"clip_cache.flow_dtype = '{dtype}'"])
        entry = cached.cache.video(cached, "v0")
        steps[dtype] = entry.flow_step("flow")
        stored = np.load(entry.folder / "flow.npy")
        assert stored.dtype == np.dtype(dtype) and stored.shape == (12, 2, 20, 27)
        error = (finish_item(cached[0], cached)["flow"] - plain[0]["flow"]).abs().max()
        assert error <= steps[dtype] / 2 + 1e-5
    assert steps["int16"] < steps["int8"] / 200
    rgb = np.load(_dataset(data, tmp_path / "int8").cache.video(plain, "v0").folder / "rgb.npy")
    assert rgb.dtype == np.uint8 and rgb.shape == (12, 20, 27, 3)  # every frame, resized, not cropped


def test_entries_are_memory_mapped_and_written_once(data, tmp_path, monkeypatch):
    cached = _dataset(data, tmp_path / "cache")
    for index in range(len(cached)):
        cached[index]
    entries = sorted(p for p in (tmp_path / "cache").glob("*/*") if p.is_dir())
    assert len(entries) == 3 and not list((tmp_path / "cache").glob("*/.*tmp*"))
    # A second dataset (another process in real use) reads the entries; it never decodes.
    plain = _dataset(data)
    want = [plain[(3, index)] for index in range(len(plain))]
    again = _dataset(data, tmp_path / "cache")
    for source in again.sources.values():
        monkeypatch.setattr(type(source), "read", lambda *a: pytest.fail("decoded a cached video"))
    for index, item in enumerate(want):
        assert torch.equal(finish_item(again[(3, index)], again)["rgb"], item["rgb"])


def test_arrays_stay_open_between_reads_at_most_limit_at_once(data, tmp_path, monkeypatch):
    """Each array is opened once while it is among the `limit` most recently read; beyond the
    limit the least recently read is closed first, and reads stay equal either way."""
    first = _dataset(data, tmp_path / "cache")
    want = [finish_item(first[(2, index)], first) for index in range(len(first))]
    monkeypatch.setitem(clip_cache._OPEN_ARRAYS, os.getpid(), OpenArrays())  # none open yet
    opened = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda path, **kw: opened.append(Path(path).name) or real_load(path, **kw))
    again = _dataset(data, tmp_path / "cache")
    for _ in range(3):
        for index, item in enumerate(want):
            got = finish_item(again[(2, index)], again)
            assert all(torch.equal(got[key], item[key]) for key in ("rgb", "flow", "skeleton"))
    files_per_video = 4  # rgb, flow, skeleton_xy, skeleton_score
    videos = [clip.video for clip in again.clips]
    assert len(opened) == len(set(videos)) * files_per_video < len(videos) * files_per_video
    opened.clear()
    tight = _dataset(data, tmp_path / "cache")
    monkeypatch.setitem(clip_cache._OPEN_ARRAYS, os.getpid(), OpenArrays(limit=files_per_video))  # one video's
    order = videos[::-1] + videos  # a video's arrays are reopened only after another video's
    for video_index in list(range(len(videos)))[::-1] + list(range(len(videos))):
        tight[(2, video_index)]
    switches = 1 + sum(a != b for a, b in zip(order, order[1:]))
    assert len(opened) == switches * files_per_video and len(process_open_arrays()._open) == 4
    # One bound per process, whatever the number of caches: a second dataset shares it.
    other = _dataset(data, tmp_path / "cache")
    other[(2, 0)]
    assert len(process_open_arrays()._open) == 4 and process_open_arrays().limit == files_per_video


def test_changed_files_or_settings_fill_a_new_entry(data, tmp_path):
    cache_dir = tmp_path / "cache"
    cached = _dataset(data, cache_dir)
    first = cached.cache.video(cached, "v1").folder
    # Rewrite v1's frames with other content: size/mtime change, the entry is replaced.
    frames = np.full_like(data["frames"]["v1"], 200)
    time.sleep(0.01)
    write_frames(Path(data["annotations"]).parent, "v1", frames)
    fresh = _dataset(data, cache_dir)
    second = fresh.cache.video(fresh, "v1").folder
    assert second != first and not first.exists() and second.parent == first.parent
    assert torch.equal(finish_item(fresh[3], fresh)["rgb"], _dataset(data)[3]["rgb"])
    # Another resize: another settings key, a separate entry.
    resized = _dataset(data, cache_dir, extra=["spatial_transform.short_side = 24"])
    assert resized.cache.video(resized, "v1").folder.parent != second.parent
    _assert_same_clips(_dataset(data, extra=["spatial_transform.short_side = 24"]), resized, epochs=(0,))


def _fill_in_child(cache_dir, annotations, queue):
    gin.parse_config(SETTINGS)
    dataset = build_clip_dataset(annotations, mode="eval", cache_dir=cache_dir)
    entry = dataset.cache.video(dataset, "v0")
    queue.put(os.stat(entry.folder / "rgb.npy").st_ino)


def test_a_second_process_waits_for_the_lock_and_reuses_the_entry(data, tmp_path):
    cache_dir = tmp_path / "cache"
    dataset = _dataset(data, cache_dir, mode="eval")
    folder = dataset.cache.entry_folder(dataset, "v0")
    folder.parent.mkdir(parents=True)
    lock = folder.parent / f"{folder.name.split('-')[0]}.lock"
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    with _locked(lock):  # as a worker filling v0 would hold it
        child = context.Process(target=_fill_in_child, args=(str(cache_dir), str(data["annotations"]), queue))
        child.start()
        time.sleep(3)
        assert child.is_alive() and not folder.exists()  # waiting, neither writing nor reading
        dataset.cache._fill(dataset, "v0", folder)
    inode = os.stat(folder / "rgb.npy").st_ino
    child.join(60)
    assert child.exitcode == 0 and queue.get(timeout=5) == inode  # it read ours, wrote nothing


def test_a_half_written_entry_is_never_read(data, tmp_path):
    cache_dir = tmp_path / "cache"
    dataset = _dataset(data, cache_dir, mode="eval")
    folder = dataset.cache.entry_folder(dataset, "v0")
    staging = folder.parent / f".{folder.name}.tmp-1-dead"  # a process killed while writing
    staging.mkdir(parents=True)
    (staging / "rgb.npy").write_bytes(b"truncated")
    assert torch.equal(finish_item(dataset[0], dataset)["rgb"], _dataset(data, mode="eval")[0]["rgb"])
    assert (folder / "meta.json").is_file()


def test_cache_command_fills_every_video(data, tmp_path, capsys):
    cache_dir = tmp_path / "cache"
    gin_file = tmp_path / "data.gin"
    gin_file.write_text("\n".join(SETTINGS + [f"clip_data.annotations = '{data['annotations']}'",
                                              f"clip_data.cache_dir = '{cache_dir}'"]) + "\n")
    assert data_main(["cache", "--gin_file", str(gin_file), "--quiet"]) == 0
    assert "3 of 3 videos cached" in capsys.readouterr().out
    assert len([p for p in cache_dir.glob("*/*") if p.is_dir()]) == 3


def test_cache_command_without_a_folder_says_how_to_set_one(data, tmp_path):
    gin_file = tmp_path / "data.gin"
    gin_file.write_text(f"clip_data.annotations = '{data['annotations']}'\n")
    with pytest.raises(SystemExit, match="clip_data.cache_dir"):
        data_main(["cache", "--gin_file", str(gin_file), "--quiet"])


def test_bad_cache_settings_are_refused():
    with pytest.raises(ValueError, match="clip_cache.flow_dtype='float8'"):
        ClipCache("x", flow_dtype="float8")
    with pytest.raises(ValueError, match="clip_cache.finish_on='gpu'"):
        ClipCache("x", finish_on="gpu")


def _open_in_child(queue):
    arrays = process_open_arrays()
    queue.put((len(arrays._open), os.getpid() in clip_cache._OPEN_ARRAYS, len(clip_cache._OPEN_ARRAYS)))


def test_a_forked_worker_bounds_its_own_open_arrays(data, tmp_path):
    cached = _dataset(data, tmp_path / "cache")
    cached[(0, 0)]
    assert len(process_open_arrays()._open) > 0
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_open_in_child, args=(queue,))
    child.start()
    child.join(30)
    assert queue.get(timeout=5) == (0, True, 1)  # a fresh, empty one of its own; the parent's dropped
