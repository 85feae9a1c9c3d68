"""Dropping annotation entries by a field's value before they become clips:
`clip_annotations.exclude = {'video_id': ['d18ef16d-...', ...]}`.

MM-CDFSL leaves five Ego4D videos out of its source list this way (its `delete` list,
configs/data_module/mm_distill_data_module.yaml:55-62, matched against each entry's `video_id`
in datamodule/dataset/ego4d_unlabel_combined_multimodal_dataset.py:49-54). The key is any entry
field, not only the one naming the frame folder: Ego4D entries name their folder by `clip_uid`
but are excluded by `video_id`. A listed value that no entry holds is an error: a typo in an
exclude list would otherwise drop nothing, silently.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Mapping, Sequence

Exclude = Mapping[str, Sequence[str]]


def check_exclude(exclude: Any) -> dict[str, set[str]]:
    """The binding as {key: set of values}; refuses other shapes with an example."""
    example = "clip_annotations.exclude = {'video_id': ['d18ef16d-f803-4387-bb5e-7876f1522a63']}"
    if not isinstance(exclude, Mapping):
        raise ValueError(f"clip_annotations.exclude must map an entry key to a list of values, "
                         f"got {exclude!r}; e.g. {example}")
    out = {}
    for key, values in exclude.items():
        if not isinstance(key, str) or isinstance(values, str) or not isinstance(values, Sequence):
            raise ValueError(f"clip_annotations.exclude[{key!r}] must be a list of values, got "
                             f"{values!r}; e.g. {example}")
        out[key] = {str(v) for v in values}
    return out


def exclude_entries(path: Path, entries: list, exclude: Exclude) -> list:
    """`entries` without those whose `key` holds a listed value; prints how many were dropped.

    Raises ValueError naming each listed value no entry holds (with the closest ones present),
    so a misspelt or misplaced exclude list does not pass unnoticed."""
    wanted = check_exclude(exclude)
    kept, dropped = [], 0
    seen: dict[str, set[str]] = {key: set() for key in wanted}
    for entry in entries:
        hit = False
        if isinstance(entry, Mapping):
            for key, values in wanted.items():
                if key in entry:
                    value = str(entry[key])
                    seen[key].add(value)
                    hit = hit or value in values
        if hit:
            dropped += 1
        else:
            kept.append(entry)
    for key, values in wanted.items():
        absent = sorted(values - seen[key])
        if absent:
            close = difflib.get_close_matches(absent[0], sorted(seen[key]), n=2, cutoff=0.8)
            hint = f" (closest present: {close})" if close else ""
            where = (f"no entry of {path} has the key '{key}'" if not seen[key] else
                     f"{len(absent)} of its values are in no entry of {path}: {absent[:5]}{hint}")
            raise ValueError(f"clip_annotations.exclude['{key}']: {where}. Fix the list, or bind "
                             f"it under the scope of the file that holds those values (e.g. "
                             f"source/clip_annotations.exclude) so other lists do not read it.")
    listed = sum(len(v) for v in wanted.values())
    print(f"[data] {path}: excluded {dropped} of {len(entries)} entries by "
          f"clip_annotations.exclude ({listed} listed values of {sorted(wanted)})", flush=True)
    return kept
