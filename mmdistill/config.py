"""gin plumbing: parse files and bindings with errors that say which one failed, flatten the
operative config for W&B, and turn W&B sweep arguments into bindings.

A leaf: it imports nothing of mmdistill. Whoever parses imports the modules whose configurables
its gin files bind first (`commands.configurables`: all of them, or the data modules for the
data command), so a misspelled name fails here rather than halfway through a run.

gin 0.5.0 has no dict API for a config, so `flatten_config` parses gin's own text with
`gin.config_parser` (the parser gin itself uses) instead of scraping it with regexes.

A setting has one name, and a binding the code would ignore is an error here, at parse time:
gin lets a value the caller passes win over a binding, so every parameter a caller supplies is on
its configurable's denylist (gin refuses the binding) and `SUPPLIED` names the binding that works;
one a caller supplies in some scopes only is refused for those scopes (`SUPPLIED`'s scoped
keys); a retired spelling is refused naming the new one (`RETIRED`).
"""
from __future__ import annotations

import ast
import logging
import re
from pathlib import Path
from typing import Any, Iterable

import gin
from gin import config_parser


class _QuietSearchMisses(logging.Filter):
    """gin logs an ERROR for every search-path prefix an include is not under, even when a later
    prefix finds it; a file found nowhere still fails loudly with gin's own exception."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Path not found")


class ConfigError(Exception):
    """A gin file or binding that cannot be applied; run.py turns it into exit code 2."""


REPO_ROOT = Path(__file__).resolve().parent.parent
_SEARCH_PATH_ADDED = False


# Bindings the code would ignore because the caller passes the value -> what to bind instead.
# 'configurable.param' (any scope) is also on that configurable's gin denylist; gin refuses it and
# parse_config says this. 'scope/configurable.param' is passed in that scope only (gin's denylist
# cannot say "only there"), so parse_config refuses it itself after each file and binding.
SUPPLIED = {
    "experiment.config_name": "--gin_file (a run is named after its gin file; experiment.name "
                              "names it otherwise)",
    "experiment.argv": "nothing: the command line is recorded as it was given",
    "experiment.step": "pipeline.steps (a pipeline names its steps)",
    "evaluate.ctx": "nothing: the run passes its own context",
    "evaluate.ckpt_path": "experiment.ckpt_path",
    "pretrain.ctx": "nothing: the run passes its own context",
    "pretrain.resume_from": "experiment.resume",
    "validation.ctx": "nothing: the run passes its own context",
    "validation.model": "nothing: the model being trained is validated",
    "train.objective": "experiment.task (the stage builds it)",
    "train.loader": "unlabeled/clip_data.* and unlabeled/data_loader.*",
    "train.ctx": "nothing: the run passes its own context",
    "train.resume_from": "experiment.resume",
    "train.epoch_end": "validation.eval_every and validation.annotations",
    "mae.encoder": "encoder/video_vit.* (or video_vit.*)",
    "mae.action_head": "pretrain.source = True and action_head.dropout",
    "pretrained.model": "teacher_<modality>/video_vit.* or student/video_vit.*",
    "pretrained.path": "distill.teacher_checkpoints (a teacher's: a list in the order of "
                       "distill.modalities, or a dict such as {'flow': path}) or "
                       "distill.student_init (the student's); pretrain.init_checkpoint for a "
                       "pretraining run",
    "video_vit.in_chans": "nothing: a model's input channels follow from its modality's spec "
                          "(mmdistill/data/modalities/; the reader's channel count)",
    "cmt_head.in_dim": "student/video_vit.* (the head's input is the student's width)",
    "cmt_head.out_dim": "teacher_<modality>/video_vit.* (the head's output is the teacher's width)",
    "action_head.in_dim": "encoder/video_vit.* (the head reads the encoder's width)",
    "action_head.num_classes": "source/clip_data.annotations (the classes of the source clips)",
    "clip_data.modalities": "distill.modalities (distillation), pretrain.modality (pretraining), "
                            "evaluate.modalities (evaluation); --modalities in the data tools",
    "clip_data.mode": "nothing: training clips are read in 'train' mode, evaluation clips in "
                      "'eval' mode",
    "clip_data.seed": "experiment.seed",
    "clip_data.mask": "distill.mask_ratio (distillation) or pretrain.mask_ratio (pretraining); "
                      "fewshot.mask_ratio for masked evaluation views",
    "data_loader.dataset": "clip_data.* in the loader's scope",
    "data_loader.seed": "experiment.seed",
    "data_loader.rank": "nothing: torchrun sets the rank",
    "data_loader.world_size": "nothing: torchrun sets the number of processes",
    "clip_cache.folder": "clip_data.cache_dir",
    "clip_annotations.path": "clip_data.annotations (in its scope, e.g. "
                             "unlabeled/clip_data.annotations)",
    "clip_annotations.on_bad_entry": "clip_data.on_bad_clip",
    "clip_annotations.require_labels": "clip_data.labeled",
    "fewshot.model": "experiment.ckpt_path or evaluate.baselines",
    "fewshot.loader": "fewshot_data/clip_data.* and fewshot_data/data_loader.*",
    "fewshot.device": "experiment.device",
    "fewshot.amp_dtype": "experiment.precision",
    "fewshot.heads": "fewshot.use_heads (the heads are the checkpoint's)",
    "fewshot.checkpoint": "nothing: the feature cache is keyed on the weights",
    "fewshot.logger": "nothing: the run's logger",
    "fewshot.summary_path": "nothing: the evaluate stage writes fewshot_<model>.json",
    "fewshot.input_key": "evaluate.modalities",
    "fewshot.cache_dir": "evaluate.cache_features (features cached in the run folder)",
    "fewshot_logistic.n_way": "fewshot.settings",
    "demo_data.root": "demo_data_cache.root",
    # passed in one scope only
    "fewshot_val_data/clip_data.annotations": "validation.annotations",
    "fewshot_data/clip_data.labeled": "nothing: evaluation clips are always labelled",
    "fewshot_val_data/clip_data.labeled": "nothing: validation clips are always labelled",
    "source/clip_data.labeled": "nothing: source clips are always labelled",
    "fewshot_data/data_loader.shuffle": "nothing: evaluation reads every clip in order",
    "fewshot_data/data_loader.drop_last": "nothing: evaluation reads every clip in order",
    "fewshot_val_data/data_loader.shuffle": "nothing: validation reads every clip in order",
    "fewshot_val_data/data_loader.drop_last": "nothing: validation reads every clip in order",
}

# Spellings that are gone -> the one that replaced them ('configurable.param' or a configurable).
RETIRED = {
    "fewshot.n_way": "fewshot.settings = [(n_way, k_shot, q_query, episodes), ...]",
    "fewshot.k_shot": "fewshot.settings = [(n_way, k_shot, q_query, episodes), ...]",
    "fewshot.q_query": "fewshot.settings = [(n_way, k_shot, q_query, episodes), ...]",
    "fewshot.episodes": "fewshot.settings = [(n_way, k_shot, q_query, episodes), ...]",
    "pipeline.background": "pipeline.needs = {'<step>': ['<the steps it reads>'], ...} and "
                           "pipeline.lanes = 2 (steps side by side once what they need is done)",
    "tube_mask": "distill.mask_ratio (distillation), pretrain.mask_ratio (pretraining) or "
                 "fewshot.mask_ratio (evaluation views); the mask's grid follows from the model",
}

_DENYLISTED = re.compile(r"Configurable '([\w.]+)' has denylisted kwarg '(\w+)'")
_NO_PARAMETER = re.compile(r"Configurable '([\w.]+)' doesn't have a parameter named '(\w+)'")
_NO_CONFIGURABLE = re.compile(r"No configurable matching (?:reference )?'@?([\w./]+)")


def _instead(working: str) -> str:
    """'bind X instead', or why there is nothing to bind ('nothing: <why>' in SUPPLIED)."""
    if working.startswith("nothing: "):
        return f"{working[len('nothing: '):]}, so drop the binding"
    return f"bind {working} instead"


class _IgnoredBinding(ValueError):
    """A scoped binding `SUPPLIED` lists: the code passes that value in that scope."""


def _explain(err: Exception) -> str | None:
    """The binding that works, for gin's error about a denylisted or retired name (else None)."""
    text = str(err)
    if isinstance(err, _IgnoredBinding):
        return text
    if match := _DENYLISTED.search(text):
        name = f"{match[1].split('.')[-1]}.{match[2]}"
        working = SUPPLIED.get(name, "nothing: the code that calls it passes it")
        return (f"`{name}` is passed by the code that calls {match[1].split('.')[-1]}, so a "
                f"binding of it would be ignored: {_instead(working)}")
    if match := _NO_PARAMETER.search(text):
        name = f"{match[1].split('.')[-1]}.{match[2]}"
        if name in RETIRED:
            return f"`{name}` is no longer a setting; instead bind {RETIRED[name]}"
    if match := _NO_CONFIGURABLE.search(text):
        name = match[1].split("/")[-1]
        if name in RETIRED:
            return f"`{name}` is no longer a configurable; instead bind {RETIRED[name]}"
    return None


def _refuse_ignored_scoped_bindings() -> None:
    """Raise for a binding `SUPPLIED` lists under a scope the code passes that value in."""
    for (scope, selector), params in list(gin.config._CONFIG.items()):
        if not scope:
            continue
        name = selector.split(".")[-1]
        for param in params:
            for part in scope.split("/"):
                key = f"{part}/{name}.{param}"
                if key in SUPPLIED:
                    raise _IgnoredBinding(f"`{scope}/{name}.{param}` is passed by the code in "
                                          f"scope '{part}', so a binding of it would be ignored: "
                                          f"{_instead(SUPPLIED[key])}")


def _retired_configurables(names: Iterable[str]) -> None:
    """skip_unknown parsing skips a retired configurable; name what replaced it instead."""
    for name in names:
        if name.split("/")[-1] in RETIRED:
            raise ConfigError(f"`{name}` is no longer a configurable; instead bind "
                              f"{RETIRED[name.split('/')[-1]]}")


class _UnknownNames(set):
    """gin's `skip_unknown` as a set that holds every name gin asks about, and records them: gin
    asks only about configurables no imported module registered, so `asked` is what was skipped."""

    def __init__(self):
        super().__init__()
        self.asked: set[str] = set()

    def __contains__(self, name) -> bool:
        self.asked.add(name)
        return True

    def __bool__(self) -> bool:
        return True


def resolve_gin_file(path: str | Path) -> Path:
    """`path`, or the shipped file of that name: shipped experiments are found from any working
    directory."""
    path = Path(path)
    if not path.is_file() and not path.is_absolute() and (REPO_ROOT / path).is_file():
        return REPO_ROOT / path
    return path


def parse_config(gin_files: Iterable[str | Path] = (), bindings: Iterable[str] = (),
                 finalize: bool = True, skip_unknown: bool = False) -> list[str]:
    """Parse files in order, then bindings in order (bindings override files).

    Each file and each binding is parsed separately so an error names exactly the one at fault.
    skip_unknown: ignore bindings of configurables nobody imported instead of refusing them, for a
    tool that builds one part of an experiment from the experiment's gin file (the data check).
    Returns the names it skipped (sorted), so the tool can show them: a typo is one of them.
    """
    skipped = _UnknownNames() if skip_unknown else False
    # `include 'gin/base/x.gin'` then works from any working directory, not only the repo root.
    global _SEARCH_PATH_ADDED
    if not _SEARCH_PATH_ADDED:
        gin.add_config_file_search_path(str(REPO_ROOT))
        logging.getLogger().addFilter(_QuietSearchMisses())
        _SEARCH_PATH_ADDED = True
    for path in gin_files:
        path = resolve_gin_file(path)
        if not path.is_file():
            raise ConfigError(f"gin file not found: {path}. Pass an existing file to --gin_file "
                              f"(see the gin/ folder for the shipped experiments).")
        try:
            gin.parse_config_file(str(path), skip_unknown=skipped)
            _refuse_ignored_scoped_bindings()
        except Exception as err:  # gin raises ValueError/KeyError/SyntaxError subclasses
            explained = _explain(err)
            if explained:
                raise ConfigError(f"in gin file {path} (or a file it includes): {explained}\n"
                                  f"(gin: {err})") from err
            raise ConfigError(f"in gin file {path} (or a file it includes): "
                              f"{type(err).__name__}: {err}") from err
    for binding in bindings:
        try:
            gin.parse_config(binding, skip_unknown=skipped)
            _refuse_ignored_scoped_bindings()
        except Exception as err:
            explained = _explain(err)
            if explained:
                raise ConfigError(f"in --gin_param {binding!r}: {explained}") from err
            hint = ("Strings need quotes: --gin_param \"experiment.name='x'\"."
                    if isinstance(err, SyntaxError) else
                    "Check the configurable and parameter names against operative_config.gin "
                    "of an earlier run or the gin/ files.")
            raise ConfigError(f"in --gin_param {binding!r}: {type(err).__name__}: {err}\n"
                              f"{hint}") from err
    if skip_unknown:
        _retired_configurables(skipped.asked)
    if finalize:
        gin.finalize()
    return sorted(skipped.asked) if skip_unknown else []


class _KeepReferences(config_parser.ParserDelegate):
    """Represents `@ref` and `%macro` values as their text, for a flat, JSON-friendly view."""

    def configurable_reference(self, scoped_configurable_name, evaluate):
        return f"@{scoped_configurable_name}{'()' if evaluate else ''}"

    def macro(self, macro_name):
        return f"%{macro_name}"


def flatten_config(config_text: str) -> dict[str, Any]:
    """Every binding in a gin config text as `scope/configurable.param -> value`.

    Macros appear as `%NAME` under their own key (`NAME`), so a dashboard can group on either.
    """
    flat: dict[str, Any] = {}
    parser = config_parser.ConfigParser(config_text, _KeepReferences())
    for statement in parser:
        if isinstance(statement, config_parser.BindingStatement):
            name = statement.selector
            if statement.scope:
                name = f"{statement.scope}/{name}"
            key = f"{name}.{statement.arg_name}" if statement.arg_name else name
            flat[key] = _jsonable(statement.value)
    return flat


UNBOUND = object()

# Settings (configurable.param in any scope, or configurable.*) that say where a run writes, how it
# logs or how fast it loads, not what it computes: a resume or a kept pipeline output may differ in
# them (mmdistill/train/resume_config.py, mmdistill/pipeline_record.py).
NOT_THE_WORK = ("experiment.resume", "experiment.output_root", "experiment.name", "experiment.threads",
                "experiment.device", "experiment.test", "experiment.ckpt_path", "wandb_run.*",
                "evaluate.*", "train.log_every", "train.resume_may_change", "data_loader.num_workers",
                "data_loader.persistent_workers", "data_loader.prefetch_factor", "data_loader.pin_memory")


def names_match(key: str, names: Iterable[str]) -> bool:
    """Whether the setting `key` (`scope/configurable.param`) is one of `names`: a name with a
    scope matches that scope, one without matches every scope, `configurable.*` every param."""
    base = key.rsplit("/", 1)[-1]
    return any(name in (key, base) or (name.endswith(".*") and base.startswith(name[:-1]))
               for name in names)


def bound_value(flat: dict[str, Any], key: str) -> Any:
    """The value a flat config (`flatten_config`) gives the operative setting `key`
    (`scope/sub/configurable.param`): gin applies a binding to a call when its scope is a prefix
    of the call's scope, the longest one winning; UNBOUND when none applies."""
    scope, _, name = key.rpartition("/")
    parts = scope.split("/") if scope else []
    for length in range(len(parts), -1, -1):
        candidate = "/".join([*parts[:length], name])
        if candidate in flat:
            return flat[candidate]
    return UNBOUND


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def sweep_args_to_bindings(args: Iterable[str]) -> list[str]:
    """W&B agents call `run.py --train.lr=0.001 --experiment.name=foo`; make those gin bindings.

    A value that is not a Python literal (`foo`) is taken as a string, so sweep files can list bare
    words; anything else is rejected with the argument named.
    """
    bindings = []
    for arg in args:
        if not (arg.startswith("--") and "=" in arg and "." in arg.split("=", 1)[0]):
            raise ConfigError(f"unrecognised argument {arg!r}: expected --gin_file, --gin_param, or a "
                              f"sweep argument of the form --configurable.param=value")
        key, value = arg[2:].split("=", 1)
        try:
            ast.literal_eval(value)
        except (ValueError, SyntaxError):
            if not value.startswith(("@", "%")):
                value = repr(value)
        bindings.append(f"{key} = {value}")
    return bindings
