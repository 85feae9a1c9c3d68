"""A RunContext for tests: CPU, a fresh run dir, and a logger the test can read back."""
from pathlib import Path

from mmdistill.context import RunContext
from mmdistill.tracking import MemoryLogger


def cpu_context(tmp_dir: Path, **overrides) -> RunContext:
    """The context a stage or the loop gets from experiment(), minus W&B and the run-dir naming."""
    tmp_dir = Path(tmp_dir)
    (tmp_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    return RunContext(dir=tmp_dir, logger=overrides.pop("logger", MemoryLogger()), **overrides)


# A ViT small enough for few-shot tests on 4 frames of 32x32.
TINY_VIT = dict(num_frames=4, img_size=(32, 32), patch_size=16, tubelet_size=2, embed_dim=32,
                depth=1, num_heads=2)


def bind_tiny_fewshot_data(root: Path, *extra_bindings: str) -> None:
    """Write a 2-class, 8-clip labelled dataset under `root` and bind it (gin) as the few-shot
    clips, with clip geometry for TINY_VIT and 2-way 1-shot episodes."""
    import gin
    from data_factories import make_dataset

    data = make_dataset(root, videos=("v0", "v1", "v2", "v3"), labels=("a", "b"),
                        events_per_video=2, num_frames=12, size=(32, 32))
    gin.parse_config([
        f"fewshot_data/clip_data.annotations = '{data['annotations']}'",
        "temporal_sampling.num_frames = 4", "temporal_sampling.sampling_rate = 1",
        "spatial_transform.short_side = None", "spatial_transform.crop_size = (32, 32)",
        "data_loader.batch_size = 4", "data_loader.num_workers = 0",
        "fewshot.settings = [(2, 1, 2, 12)]", *extra_bindings])
