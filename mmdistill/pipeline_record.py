"""What made a kept pipeline output, and whether this run's step would make the same one.

Beside each kept output, `<output>.made_with.json` records the step's parsed config and its
operative config (what the step really used), and the command line's --gin_param bindings. A
rerun reuses the output only when the step's config, parsed afresh from its gin files, the
pipeline's further --gin_file files and the bindings, gives every setting the step used the same
value; otherwise it is refused (a changed step file, `train.epochs = 20` in an extra file, ...).
Settings the step never used (`evaluate.*` for a teacher's pretraining) do not count. Values are
compared parsed (`train.epochs = 1` is `train.epochs=1`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import gin

from mmdistill.config import NOT_THE_WORK, UNBOUND, bound_value, flatten_config, names_match


class KeptOutputError(ValueError):
    """A kept output that this run's step would not make as it is."""


def made_with(output: Path) -> Path:
    return output.with_name(output.name + ".made_with.json")


def _plain(flat: dict) -> dict:
    return json.loads(json.dumps(flat))  # tuples as lists, as they come back from the record


def step_record(bindings: Sequence[str]) -> dict:
    """Call right after the step ran, while gin holds its config."""
    return {"bindings": list(bindings), "config": _plain(flatten_config(gin.config_str())),
            "operative": _plain(flatten_config(gin.operative_config_str()))}


def write_record(output: Path, record: dict) -> None:
    path = made_with(output)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.rename(path)


def differences(record: dict, bound_now: dict) -> dict[str, tuple[Any, Any]]:
    """setting -> (value then, value now) for the settings the step used that differ."""
    bound_then, found = record["config"], {}
    for key, then in record["operative"].items():
        if names_match(key, NOT_THE_WORK):
            continue  # where it was written or logged, not what was made
        now = bound_value(bound_now, key)
        if now is UNBOUND:
            if bound_value(bound_then, key) is UNBOUND:
                continue  # its default then and now
            now = "(unbound: its default)"
        if now != then:
            found[key] = (then, now)
    return found


def check_kept_output(output: Path, step: str, bindings: Sequence[str]) -> None:
    """Call with gin holding this run's config of `step`: refuse to reuse `output` when it was
    made otherwise, or when nothing says how it was made; warn when only bindings the step
    never used differ."""
    record_path = made_with(output)
    fix = (f"Delete {output} (and {record_path.name}) to make it with this run's config, or give "
           f"the step another pipeline.outputs path")
    if not record_path.is_file():
        raise KeptOutputError(f"pipeline step '{step}': {output} exists but {record_path.name} beside it, "
                              f"which says what config made it, does not, so it cannot be reused safely. "
                              f"{fix}.")
    record = json.loads(record_path.read_text())
    if "operative" not in record:
        raise KeptOutputError(f"pipeline step '{step}': {record_path} records only the command line, not "
                              f"the step's config (made by an older mmdistill). {fix}.")
    found = differences(record, _plain(flatten_config(gin.config_str())))
    if found:
        listed = "; ".join(f"{key}: {then!r} then, {now!r} now" for key, (then, now) in found.items())
        raise KeptOutputError(f"pipeline step '{step}': {output} was made with another config ({listed}); "
                              f"it is not reused. {fix}.")
    then, now = (_plain(flatten_config("\n".join(b))) for b in (record.get("bindings", []), bindings))
    if then != now:
        only_then = sorted(f"{k}={v!r}" for k, v in then.items() if now.get(k, object()) != v)
        only_now = sorted(f"{k}={v!r}" for k, v in now.items() if then.get(k, object()) != v)
        print(f"[pipeline] warning: {output} was made by a run with other --gin_param bindings "
              f"(then only: {', '.join(only_then) or 'none'}; now only: {', '.join(only_now) or 'none'}), "
              f"none of which this step uses; it is reused as it is. Delete it (and {record_path.name}) "
              f"to make it with this run's settings, or run from another folder.", flush=True)
