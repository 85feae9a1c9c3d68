"""Few-shot evaluation of saved models on any labelled clips, in one command:

  python -m mmdistill.eval --checkpoint student=output/.../last.ckpt \\
      --checkpoint teacher=/ckpts/videomae_rgb.pth --clips ../shared/data/tennis_strokes --out eval/

`--clips DIR` reads a folder per class of video files straight from disk (decord); prepared data
(`python -m mmdistill.prepare`) is read with `--annotations FILE --data-root DIR`, which flow and
skeleton models need. The arguments become gin bindings of the `evaluate` stage, which then runs
as `experiment.task = 'evaluate'` runs it, so this command and the stage cannot drift apart.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import gin

from mmdistill.commands.flags import add_gin_flags
from mmdistill.data.modalities.specs import all_specs

NAME = re.compile(r"[A-Za-z0-9_.-]+")
# What one evaluation writes in --out; set aside while a new one runs (PREVIOUS), replaced only
# once the new results are written. The feature cache stays: it only speeds a rerun up.
RESULT_FILES = ("summary.json", "fewshot_*.json", "operative_config.gin", "metrics.jsonl")
PREVIOUS = ".previous_results"
FAILED_SUMMARY = "failed_summary.json"


class UsageError(ValueError):
    """A bad argument; the message names it and the fix."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mmdistill.eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    models = parser.add_argument_group("models")
    models.add_argument("--checkpoint", action="append", required=True, metavar="[NAME=]PATH",
                        help="a model to evaluate, in any format the checkpoint loader reads "
                             "(see README 'Bringing your checkpoints'); repeatable. NAME "
                             "(default: the file name) labels its column and fewshot_NAME.json")
    models.add_argument("--modality", action="append", default=[], metavar="[NAME=]MODALITY",
                        help=f"input of a model, one of {', '.join(all_specs())} (default rgb); "
                             "NAME may be left out when there is one checkpoint")
    models.add_argument("--trust-checkpoint", action="store_true",
                        help="allow arbitrary unpickling (only for files you trust)")
    data = parser.add_argument_group("clips (one of)")
    data.add_argument("--clips", type=Path, metavar="DIR",
                      help="DIR/<class>/<clip>.mp4: videos read directly, no preparation (RGB only)")
    data.add_argument("--annotations", type=Path, metavar="FILE",
                      help="a labelled annotation list (flat JSON/CSV or tennis events JSON) of "
                           "prepared data; needs --data-root")
    data.add_argument("--data-root", type=Path, metavar="DIR",
                      help="the prepared data (frames/, flows/, skeletons/) of --annotations")
    geometry = parser.add_argument_group("clip geometry (default: what the models were built for)")
    geometry.add_argument("--frames", type=int, help="frames per clip")
    geometry.add_argument("--sampling-rate", type=int, default=2, help="frame step (default 2)")
    geometry.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="crop size")
    geometry.add_argument("--short-side", type=int,
                          help="frames are resized to this short side before the centre crop "
                               "(default: the crop's short side)")
    protocol = parser.add_argument_group("few-shot protocol")
    protocol.add_argument("--way", type=int, default=5, help="classes per episode (default 5)")
    protocol.add_argument("--shot", type=int, action="append",
                          help="support clips per class; repeatable (default 1 and 5)")
    protocol.add_argument("--queries", type=int, default=15, help="queries per class (default 15)")
    protocol.add_argument("--episodes", type=int, default=400, help="episodes per setting (default 400)")
    protocol.add_argument("--seed", type=int, default=0, help="draws the episodes (default 0)")
    protocol.add_argument("--mask-views", type=int, default=0,
                          help="tube-masked query views averaged per clip (MM-CDFSL: 2; default 0)")
    protocol.add_argument("--classifier", default="logistic",
                          choices=("logistic", "centroid", "cosine_nn"))
    run = parser.add_argument_group("run")
    run.add_argument("--out", type=Path, required=True, metavar="DIR",
                     help="writes summary.json and fewshot_NAME.json here (and a feature cache)")
    run.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    run.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    run.add_argument("--batch-size", type=int, default=4)
    run.add_argument("--workers", type=int, default=2, help="data loader workers (default 2)")
    run.add_argument("--wandb", action="store_true",
                     help="also log to W&B (wandb_run.* settings; offline unless $WANDB_MODE)")
    add_gin_flags(run, file_help="a gin file parsed before the arguments' bindings (e.g. a "
                                 "classifier's settings); repeatable",
                  param_help="an extra gin binding, applied last (e.g. "
                             "'fewshot_logistic.l2_normalize = True')")
    return parser


def named_checkpoints(values: Sequence[str]) -> dict[str, Path]:
    """NAME=PATH or PATH (named by its file); a value that exists as a path is a path, so a
    DeepSpeed folder such as `epoch=49-loss=0.6095` needs no name."""
    checkpoints: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if Path(value).exists() or not sep:
            path, name = value, re.sub(r"[^A-Za-z0-9_.-]", "_", Path(value).stem or "model")
        if not NAME.fullmatch(name):
            raise UsageError(f"--checkpoint {value}: name {name!r} may hold only letters, digits, "
                             f"'_', '.' and '-'; write --checkpoint NAME=PATH")
        if not Path(path).exists():
            raise UsageError(f"--checkpoint {value}: {path} does not exist; give the checkpoint "
                             f"file (or the folder of a DeepSpeed or Hugging Face checkpoint)")
        if name in checkpoints:
            raise UsageError(f"--checkpoint: two models are named {name!r} ({checkpoints[name]} "
                             f"and {path}); name them: --checkpoint NAME=PATH")
        checkpoints[name] = Path(path)
    return checkpoints


def model_modalities(values: Sequence[str], names: Sequence[str]) -> dict[str, str]:
    modalities = {name: "rgb" for name in names}
    for value in values:
        name, sep, modality = value.rpartition("=")
        if not sep:
            if len(names) != 1:
                raise UsageError(f"--modality {value}: say which model, --modality NAME={value} "
                                 f"(models: {', '.join(names)})")
            name = names[0]
        if name not in modalities:
            raise UsageError(f"--modality {value}: no model named {name!r}; the models are "
                             f"{', '.join(names)} (name them with --checkpoint NAME=PATH)")
        known = all_specs()  # a modality is one whose spec is known (mmdistill/data/modalities/)
        if modality not in known:
            raise UsageError(f"--modality {value}: {modality!r} is not one of {', '.join(known)}")
        modalities[name] = modality
    return modalities


def check_data(args: argparse.Namespace, modalities: dict[str, str]) -> None:
    if (args.clips is None) == (args.annotations is None):
        raise UsageError("give the clips: --clips DIR (a folder per class of videos) or "
                         "--annotations FILE --data-root DIR (prepared data), not both")
    if args.clips is not None:
        if not args.clips.is_dir():
            raise UsageError(f"--clips {args.clips}: no such folder; give a folder holding one "
                             f"folder of video files per class (DIR/<class>/<clip>.mp4)")
        other = {n: m for n, m in modalities.items() if m != "rgb"}
        if other:
            raise UsageError(f"--modality {', '.join(f'{n}={m}' for n, m in other.items())} needs "
                             f"prepared data, --clips reads RGB videos only: run python -m "
                             f"mmdistill.prepare (frames, flow, skeleton, annotations) and pass "
                             f"--annotations FILE --data-root DIR instead of --clips")
        return
    if not args.annotations.is_file():
        raise UsageError(f"--annotations {args.annotations}: no such file; give the labelled "
                         f"list python -m mmdistill.prepare annotations wrote")
    if args.data_root is None or not args.data_root.is_dir():
        raise UsageError(f"--data-root {args.data_root}: give the folder of the prepared data "
                         f"(the --out of python -m mmdistill.prepare) with --annotations")


# flag -> (attribute, smallest value); checked before any model is read.
NUMBERS = {"--way": ("way", 2), "--queries": ("queries", 1), "--episodes": ("episodes", 1),
           "--frames": ("frames", 1), "--sampling-rate": ("sampling_rate", 1),
           "--short-side": ("short_side", 1), "--mask-views": ("mask_views", 0),
           "--batch-size": ("batch_size", 1), "--workers": ("workers", 0)}


def check_numbers(args: argparse.Namespace) -> None:
    """Every number by its flag, before any work: a gin parameter's name in an error after the
    features were extracted says neither which flag nor that nothing was needed to find it."""
    for flag, (attribute, least) in NUMBERS.items():
        value = getattr(args, attribute)
        if value is not None and value < least:
            raise UsageError(f"{flag} {value}: must be at least {least}")
    for shot in args.shot or ():
        if shot < 1:
            raise UsageError(f"--shot {shot}: must be at least 1 (support clips per class)")
    if args.size is not None and min(args.size) < 1:
        raise UsageError(f"--size {args.size[0]} {args.size[1]}: both sides must be at least 1")


def check_out(out: Path, overwrite: bool) -> None:
    """Results someone already has are replaced only on request, and only once the new ones are
    written (`set_aside_results`); this check touches nothing."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a new or empty folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"--out {out} exists and is not empty; nothing was evaluated. Pass "
                         f"--overwrite to replace its results, or give another --out")


def _results(folder: Path) -> list[Path]:
    return [path for pattern in RESULT_FILES for path in folder.glob(pattern) if path.is_file()]


def set_aside_results(out: Path) -> Path | None:
    """Move the previous results into out/PREVIOUS (under the lock) -> that folder, or None when
    there were none. A run killed earlier left its previous results there: those are still the
    last complete ones, and what it wrote in `out` is dropped."""
    previous = out / PREVIOUS
    if previous.is_dir():
        for partial in _results(out):
            partial.unlink()
        return previous
    old = _results(out)
    if not old:
        return None
    previous.mkdir()
    for path in old:
        path.rename(previous / path.name)
    return previous


def settle_results(out: Path, previous: Path | None, finished: bool) -> None:
    """After the run: on success the previous results go; on failure they come back, and the
    failed run's summary is kept beside them as FAILED_SUMMARY."""
    if finished:
        (out / FAILED_SUMMARY).unlink(missing_ok=True)  # of an earlier failure, now replaced
    if previous is None:
        return
    if finished:
        for path in _results(previous):
            path.unlink()
    else:
        summary = out / "summary.json"
        if summary.is_file():
            summary.replace(out / FAILED_SUMMARY)
        for partial in _results(out):
            partial.unlink()
        for path in _results(previous):
            path.rename(out / path.name)
    previous.rmdir()


def model_input(name: str, path: Path, trust: bool, modality: str = "rgb") -> tuple[int, tuple[int, int]]:
    """(frames, (height, width)) the model takes, built exactly as the evaluate stage builds it;
    a model whose input channels are not its --modality's is refused with the flag that fixes it."""
    from mmdistill.models.heads import NormedPooling
    from mmdistill.ckpt.evaluation import models_for_evaluation

    model, _, _ = models_for_evaluation(path, None, trust)
    encoder = model.encoder if isinstance(model, NormedPooling) else model
    check_channels(name, encoder.in_chans, modality)
    (t, h, w), arch = encoder.grid_size, encoder.arch
    return t * arch["tubelet_size"], (h * arch["patch_size"], w * arch["patch_size"])


DRAWING = ("skeleton_heatmaps.stride", "skeleton_heatmaps.sigma")


def trained_drawing(gin_config: str, where: str) -> dict[str, float | int]:
    """`skeleton_heatmaps.stride` / `.sigma` as an operative config (a training checkpoint's
    `gin_config`) records them, in any scope: what a skeleton model must be shown again. Empty when
    the config never drew heatmaps; a ValueError naming `where` when its scopes disagree."""
    from mmdistill.config import flatten_config

    found: dict[str, set] = {}
    for key, value in flatten_config(gin_config).items():
        name = key.rsplit("/", 1)[-1]
        if name in DRAWING:
            found.setdefault(name.split(".")[1], set()).add(value)
    disagree = {name: sorted(values) for name, values in found.items() if len(values) > 1}
    if disagree:
        raise ValueError(f"{where}: its config draws skeleton heatmaps in more than one way "
                         f"({disagree}); evaluate it with explicit skeleton_heatmaps bindings")
    return {name: values.pop() for name, values in found.items()}


def skeleton_drawing(checkpoints: dict[str, Path], modalities: dict[str, str], trust: bool
                     ) -> dict[str, float | int]:
    """How the skeleton models were shown their heatmaps (`skeleton_heatmaps.stride` and `.sigma`
    from each checkpoint's recorded config), to show them the same: a model trained on heatmaps
    at half the crop reads 32x32 for a 64x64 clip. Models that disagree are refused."""
    from mmdistill.ckpt.reading import read_checkpoint

    drawings = {}
    for name, path in checkpoints.items():
        if modalities[name] == "skeleton":
            config = read_checkpoint(path, trust).metadata.get("gin_config") or ""
            drawings[name] = trained_drawing(config, f"--checkpoint {name}")
    if len({tuple(sorted(d.items())) for d in drawings.values()}) > 1:
        raise UsageError(f"the skeleton models were trained on heatmaps drawn differently ({drawings}); "
                         f"evaluate them in separate runs")
    return next(iter(drawings.values()), {})


def default_channels() -> dict[str, int]:
    """Each known modality's input channels with its spec's default reader (skeleton: 17 joints)."""
    return {name: int(spec.channels(spec.default_reader(folder_layout=False)))
            for name, spec in all_specs().items()}


def check_channels(name: str, channels: int, modality: str) -> None:
    expected = default_channels()
    if channels == expected[modality] or (modality == "skeleton" and channels != 3 and channels != 2):
        return  # a skeleton file may have another joint count; the stage checks it on the clips
    fits = [m for m, c in expected.items() if c == channels] or ["skeleton"]
    data = "" if fits[0] == "rgb" else (" (with --annotations FILE --data-root DIR: prepared data; "
                                        "--clips reads RGB videos only)")
    raise UsageError(f"--checkpoint {name}: the model takes {channels} input channels, not the "
                     f"{expected[modality]} of {modality}, as a {fits[0]} model does: pass "
                     f"--modality {name}={fits[0]}{data}")


def clip_geometry(args: argparse.Namespace, inputs: dict[str, tuple[int, tuple[int, int]]]
                  ) -> tuple[int, tuple[int, int]]:
    """The one clip size every model takes: all models meet the same clips, and a model reads
    clips of the size it was built for."""
    listing = ", ".join(f"{n} {f}x{h}x{w}" for n, (f, (h, w)) in inputs.items())
    frames = {f for f, _ in inputs.values()}
    sizes = {s for _, s in inputs.values()}
    if len(frames) > 1 or len(sizes) > 1:
        raise UsageError(f"the models take clips of different sizes (frames x H x W: {listing}), "
                         f"so they cannot meet the same clips; evaluate them in separate runs")
    (model_frames,), (model_size,) = frames, sizes
    if args.frames is not None and args.frames != model_frames:
        raise UsageError(f"--frames {args.frames}: the models take {model_frames} frames "
                         f"({listing}); leave --frames out or give {model_frames}")
    if args.size is not None and tuple(args.size) != model_size:
        raise UsageError(f"--size {args.size[0]} {args.size[1]}: the models take "
                         f"{model_size[0]}x{model_size[1]} crops ({listing}); leave --size out "
                         f"or give {model_size[0]} {model_size[1]}")
    return model_frames, model_size


def bindings(args: argparse.Namespace, checkpoints: dict[str, Path], modalities: dict[str, str],
             frames: int, size: tuple[int, int], drawing: dict[str, float | int] | None = None) -> list[str]:
    """The gin bindings of the evaluate stage these arguments mean (`drawing`: the skeleton
    models' heatmap settings, `skeleton_drawing`)."""
    scope = "fewshot_data"
    data = ([f"{scope}/clip_data.annotations = {str(args.clips)!r}"] if args.clips is not None else
            [f"{scope}/clip_data.annotations = {str(args.annotations)!r}",
             f"{scope}/clip_data.root = {str(args.data_root)!r}"])
    settings = [(args.way, shot, args.queries, args.episodes) for shot in args.shot or (1, 5)]
    return [
        f"evaluate.baselines = {({n: str(p) for n, p in checkpoints.items()})!r}",
        f"evaluate.modalities = {({n: m for n, m in modalities.items() if m != 'rgb'})!r}",
        f"evaluate.trust_checkpoint = {args.trust_checkpoint}",
        *data,
        f"{scope}/temporal_sampling.num_frames = {frames}",
        f"{scope}/temporal_sampling.sampling_rate = {args.sampling_rate}",
        f"{scope}/spatial_transform.crop_size = {tuple(size)}",
        f"{scope}/spatial_transform.short_side = {args.short_side or min(size)}",
        f"{scope}/data_loader.batch_size = {args.batch_size}",
        f"{scope}/data_loader.num_workers = {args.workers}",
        *(f"{scope}/skeleton_heatmaps.{name} = {value!r}" for name, value in (drawing or {}).items()),
        f"fewshot.settings = {settings}",
        f"fewshot.seed = {args.seed}",
        f"fewshot.mask_views = {args.mask_views}",
        f"fewshot.classifier = {args.classifier!r}",
        *args.gin_param,
    ]


def evaluate(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """Run the evaluate stage in `args.out` with the parsed bindings; returns the summary."""
    from mmdistill.commands.session import make_logger, run_session
    from mmdistill.context import RunContext, resolve_device, resolve_precision, seed_everything
    from mmdistill.evaluation import evaluate_stage
    from mmdistill.tracking import FanoutLogger, MetricsFile

    out = args.out
    device = resolve_device(args.device)
    amp_dtype = resolve_precision(args.precision, device)
    seed_everything(args.seed)
    summary: dict[str, Any] = {"task": "evaluate", "run_dir": str(out)}
    with run_session(out, ["python -m mmdistill.eval", *argv], summary) as session:
        previous = set_aside_results(out)  # under the session's lock, before anything is written
        session.after_summary = lambda: settle_results(out, previous,
                                                       summary.get("status") == "finished")
        session.save_config = lambda: (out / "operative_config.gin").write_text(
            gin.operative_config_str())
        if args.wandb:
            logger, _ = make_logger(0, out, out.name, "eval", "evaluate")
        else:
            logger = FanoutLogger(MetricsFile(out / "metrics.jsonl"))
        logger = session.track(logger)
        ctx = RunContext(dir=out, logger=logger, device=device, amp_dtype=amp_dtype,
                         seed=args.seed, gin_config=gin.operative_config_str)
        summary.update(evaluate_stage(ctx, None))
        logger.summary({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    from mmdistill.commands.session import run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    return run_command(lambda: _main(argv), "python -m mmdistill.eval")


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from mmdistill.ckpt.reading import CheckpointError
    from mmdistill.commands.configurables import import_configurables
    from mmdistill.config import ConfigError, parse_config
    from mmdistill.rundir import RunDirBusy

    import_configurables()  # every configurable a run uses, before parsing
    try:
        checkpoints = named_checkpoints(args.checkpoint)
        modalities = model_modalities(args.modality, list(checkpoints))
        check_numbers(args)
        check_data(args, modalities)
        check_out(args.out, args.overwrite)
        inputs = {n: model_input(n, p, args.trust_checkpoint, modalities[n])
                  for n, p in checkpoints.items()}
        drawing = skeleton_drawing(checkpoints, modalities, args.trust_checkpoint)
        stride = int(drawing.get("stride", 1))
        inputs = {n: (f, (h * stride, w * stride)) if modalities[n] == "skeleton" else (f, (h, w))
                  for n, (f, (h, w)) in inputs.items()}  # the clip's crop each model reads
        frames, size = clip_geometry(args, inputs)
        gin.clear_config()  # this command owns the configuration: only its own bindings count
        parse_config(args.gin_file, bindings(args, checkpoints, modalities, frames, size, drawing))
    except (UsageError, ConfigError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        evaluate(args, argv)
    except RunDirBusy as err:  # another evaluation writes there; nothing of it was touched
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as err:  # bad clips, annotations, a model on the wrong input
        kept = (f"; the previous results in {args.out} are kept, this run's summary is "
                f"{FAILED_SUMMARY}" if (args.out / FAILED_SUMMARY).is_file() else "")
        print(f"error: {err}\n(full traceback: {args.out / 'console.log'}{kept})", file=sys.stderr)
        return 1
    print(f"results: {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
