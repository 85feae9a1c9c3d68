"""A resume continues the run its checkpoint records, or is refused: the checkpoint keeps the
operative gin config the weights were made with, and a resumed run whose bindings differ from it
(another `train.lr`, `pretrain.mask_ratio`, `pretrain.lambda_ce` ...) would make weights no record
describes. Bindings are compared parsed (`flatten_config`), so `train.epochs=1` and
`train.epochs = 1` are the same binding.

Allowed without asking: settings that do not change what is computed (config.NOT_THE_WORK). Allowed by name:
`train.resume_may_change` (default `['train.epochs']`, the documented way to train a finished
run's copy longer); a name without a scope allows it in every scope.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import gin

from mmdistill.config import NOT_THE_WORK, UNBOUND, bound_value, flatten_config, names_match

class ResumeConfigError(ValueError):
    """A resume whose bindings differ from its checkpoint's."""


def config_differences(saved_text: str, operative_text: str, bound_text: str) -> dict[str, tuple[Any, Any]]:
    """key -> (value then, value now) for every binding that differs. `operative_text` is what
    this run used so far; a setting it has not used yet is compared with what is bound now
    (`bound_text`, the parsed config) when bound."""
    saved, now, bound = (flatten_config(text) for text in (saved_text, operative_text, bound_text))
    differences = {}
    for key in sorted(set(saved) | set(now)):
        then = saved.get(key, UNBOUND)
        current = now[key] if key in now else bound_value(bound, key)
        if then is UNBOUND and bound_value(bound, key) is UNBOUND:
            continue  # a default this run uses that the checkpoint's config did not list yet
        if current is UNBOUND or current == then:
            continue
        differences[key] = ("(not set)" if then is UNBOUND else then, current)
    return differences


def check_resume_config(path: str | Path, saved_text: str, operative_text: str,
                        may_change: Sequence[str]) -> None:
    """Refuse a resume from `path` whose bindings differ from the checkpoint's (`saved_text`),
    unless each difference is NOT_THE_WORK or named in `train.resume_may_change`."""
    if not saved_text.strip() or not operative_text.strip():
        return  # a checkpoint written without gin (tests, tools): nothing to compare
    differences = config_differences(saved_text, operative_text, gin.config_str())
    refused = {k: v for k, v in differences.items() if not names_match(k, (*NOT_THE_WORK, *may_change))}
    allowed = {k: v for k, v in differences.items() if k not in refused and not names_match(k, NOT_THE_WORK)}
    for key, (then, now) in allowed.items():
        print(f"[train] resuming with {key} = {now!r} (it was {then!r}), allowed by "
              f"train.resume_may_change", flush=True)
    if refused:
        listed = "; ".join(f"{key}: {then!r} then, {now!r} now" for key, (then, now) in refused.items())
        names = ", ".join(repr(key) for key in refused)
        raise ResumeConfigError(
            f"cannot resume from {path}: this run's bindings differ from those its weights were made "
            f"with ({listed}), so no record would say how the weights were made. Resume with the "
            f"checkpoint's bindings (its run directory's operative_config.gin), start a new run, or "
            f"allow these by name: --gin_param \"train.resume_may_change = [{names}]\"")
