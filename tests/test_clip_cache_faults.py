"""The clip cache's faults (issue 25, class 5): a truncated array or a corrupt meta.json is found
on open and the entry filled again; `data cache` verifies what exists; a full disk is named with
the entry and the free space; a cache filled for every modality serves a run that reads fewer."""
import errno
import logging

import gin
import numpy as np
import pytest
import torch
from data_factories import make_dataset

from mmdistill.data.__main__ import main as data_main
from mmdistill.data.cache_entries import CacheWriteError, read_entry
from mmdistill.data.dataset import build_clip_dataset
from mmdistill.data.device_batches import finish_item

SETTINGS = ["temporal_sampling.num_frames = 4", "temporal_sampling.sampling_rate = 2",
            "spatial_transform.short_side = 20", "spatial_transform.crop_size = (16, 24)"]


@pytest.fixture
def data(tmp_path):
    return make_dataset(tmp_path / "data", videos=("v0", "v1"), num_frames=12, size=(30, 40),
                        flow_size=(15, 20), skeleton_shape=(60, 80), events_per_video=2)


def _dataset(data, cache_dir, modalities=("rgb", "flow", "skeleton")):
    gin.clear_config()
    gin.parse_config(SETTINGS)
    return build_clip_dataset(data["annotations"], modalities=list(modalities), mode="eval",
                              cache_dir=cache_dir)


def _rgb(dataset, index=0):
    return finish_item(dataset[index], dataset)["rgb"]


def _entry(cache_dir, video="v0"):
    return next(p for p in cache_dir.glob("*/*") if p.is_dir() and (p / "meta.json").is_file()
                and f'"video": "{video}"' in (p / "meta.json").read_text())


def test_a_truncated_array_or_a_corrupt_meta_json_is_refilled_with_a_warning(data, tmp_path, caplog):
    cache = tmp_path / "cache"
    want = _rgb(_dataset(data, cache))
    entry = _entry(cache)
    array = entry / "rgb.npy"
    array.write_bytes(array.read_bytes()[:-100])  # truncated
    with caplog.at_level(logging.WARNING, logger="mmdistill.data"):
        got = _rgb(_dataset(data, cache))
    assert torch.equal(got, want)
    assert "broken" in caplog.text and "rgb.npy holds" in caplog.text and "truncated" in caplog.text
    (entry / "meta.json").write_text("{not json")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mmdistill.data"):
        assert torch.equal(_rgb(_dataset(data, cache)), want)
    assert "meta.json is not a cache entry's meta.json" in caplog.text


def test_the_cache_command_verifies_existing_entries(data, tmp_path, capsys):
    cache = tmp_path / "cache"
    gin_file = tmp_path / "data.gin"
    gin_file.write_text("\n".join(SETTINGS + [f"clip_data.annotations = '{data['annotations']}'",
                                              f"clip_data.cache_dir = '{cache}'"]) + "\n")
    assert data_main(["cache", "--gin_file", str(gin_file), "--quiet"]) == 0
    flow = _entry(cache, "v1") / "flow.npy"
    flow.write_bytes(flow.read_bytes()[:200])
    capsys.readouterr()
    assert data_main(["cache", "--gin_file", str(gin_file), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "1 broken entries were filled again" in out and "refilled: v1:" in out and "flow.npy" in out
    meta, problem = read_entry(_entry(cache, "v1"))  # whole again
    assert problem is None and np.load(_entry(cache, "v1") / "flow.npy").shape[0] == meta["modalities"]["flow"]["frames"]


def test_a_full_disk_names_the_entry_and_the_free_space(data, tmp_path, monkeypatch):
    dataset = _dataset(data, tmp_path / "cache")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(CacheWriteError, match=r"cannot write the clip cache entry .*cache/.*: the disk is "
                                              r"full.*MB are free in .*cache"):
        dataset[0]
    assert not [p for p in (tmp_path / "cache").rglob("*.tmp-*")]  # no half-written entry left


def test_a_cache_filled_for_every_modality_serves_a_run_that_reads_rgb(data, tmp_path):
    cache = tmp_path / "cache"
    full = _dataset(data, cache)
    for index in range(len(full)):
        full[index]
    folders = sorted(p for p in cache.iterdir() if p.is_dir())
    rgb_only = _dataset(data, cache, modalities=["rgb"])
    plain = _dataset(data, None, modalities=["rgb"])
    for index in range(len(plain)):
        assert torch.equal(_rgb(rgb_only, index), _rgb(plain, index))
    assert sorted(p for p in cache.iterdir() if p.is_dir()) == folders  # nothing filled anew
