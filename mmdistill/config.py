"""gin plumbing: parse files and bindings with errors that say which one failed, flatten the
operative config for W&B, and turn W&B sweep arguments into bindings.

A leaf: it imports nothing of mmdistill. Whoever parses imports the modules whose configurables
its gin files bind first (run.py's `import_configurables`, the data check's data modules), so a
misspelled name fails here rather than halfway through a run.

gin 0.5.0 has no dict API for a config, so `flatten_config` parses gin's own text with
`gin.config_parser` (the parser gin itself uses) instead of scraping it with regexes.
"""
from __future__ import annotations

import ast
import logging
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
        path = Path(path)
        if not path.is_file() and not path.is_absolute() and (REPO_ROOT / path).is_file():
            path = REPO_ROOT / path  # shipped experiments are found from any working directory
        if not path.is_file():
            raise ConfigError(f"gin file not found: {path}. Pass an existing file to --gin_file "
                              f"(see the gin/ folder for the shipped experiments).")
        try:
            gin.parse_config_file(str(path), skip_unknown=skipped)
        except Exception as err:  # gin raises ValueError/KeyError/SyntaxError subclasses
            raise ConfigError(f"in gin file {path}: {type(err).__name__}: {err}") from err
    for binding in bindings:
        try:
            gin.parse_config(binding, skip_unknown=skipped)
        except Exception as err:
            hint = ("Strings need quotes: --gin_param \"experiment.name='x'\"."
                    if isinstance(err, SyntaxError) else
                    "Check the configurable and parameter names against operative_config.gin "
                    "of an earlier run or the gin/ files.")
            raise ConfigError(f"in --gin_param {binding!r}: {type(err).__name__}: {err}\n"
                              f"{hint}") from err
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
