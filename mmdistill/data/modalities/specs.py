"""Which spec each modality name has: the built-in ones in a plain dict, and the ones a user adds
in gin.

A new modality (or a variant of a built-in one) is a `ModalitySpec` (mmdistill/data/modalities/
base.py) in the user's own module, named in the experiment's gin file:

    import my_project.depth_spec                       # gin imports the module
    modality_specs.extra = {'depth': @depth_spec()}    # depth_spec: a gin configurable returning the spec
    distill.modalities = ['rgb', 'depth']

Every part of mmdistill that handles a modality asks `spec_of(name)`; an `extra` entry of a
built-in name replaces it. The models' `in_chans` follow from the spec (`model_in_chans`); a
hand binding of `video_vit.in_chans` that disagrees is an error naming the spec.
"""
from __future__ import annotations

from typing import Mapping

import gin

from mmdistill.data.modalities.base import ModalitySpec
from mmdistill.data.modalities.flow import FLOW
from mmdistill.data.modalities import mmcdfsl  # noqa: F401  (registers the MM-CDFSL specs' gin names)
from mmdistill.data.modalities.rgb import RGB
from mmdistill.data.modalities.skeleton import SKELETON
from mmdistill.data.modalities import variants  # noqa: F401  (gin: rgb_spec, flow_spec, skeleton_spec)

BUILTIN_SPECS: dict[str, ModalitySpec] = {"rgb": RGB, "flow": FLOW, "skeleton": SKELETON}


@gin.configurable("modality_specs")
def all_specs(extra: Mapping[str, ModalitySpec] | None = None) -> dict[str, ModalitySpec]:
    """The built-in specs and `extra` ({name: spec}, which wins on a shared name)."""
    for name, spec in (extra or {}).items():
        if not isinstance(spec, ModalitySpec):
            raise ValueError(f"modality_specs.extra['{name}'] is a {type(spec).__name__}, not a "
                             f"ModalitySpec (mmdistill.data.modalities.base); bind a configurable "
                             f"that returns one, e.g. {{'{name}': @{name}_spec()}}")
    return {**BUILTIN_SPECS, **(extra or {})}


def spec_of(name: str) -> ModalitySpec:
    specs = all_specs()
    if name not in specs:
        raise ValueError(f"modality '{name}' has no spec: the known ones are {sorted(specs)}; add one "
                         f"with modality_specs.extra = {{'{name}': @your_spec()}} (docs/data.md, "
                         f"'Adding a modality')")
    return specs[name]


def travel_suffixes() -> tuple[str, ...]:
    """Every key suffix a loader may leave for the device stage, over all specs."""
    return tuple(sorted({suffix for spec in all_specs().values() for suffix in spec.travel_suffixes}))


def model_in_chans(modality: str, data_scope: str = "unlabeled") -> int:
    """The `in_chans` of the ViT that reads `modality`: its spec's channel count with the reader
    the data scope configures (`video_vit.in_chans` is denylisted, so nobody binds it)."""
    with gin.config_scope(None):  # from the top, whatever scope the caller is in
        spec = spec_of(modality)
        with gin.config_scope(data_scope):
            return int(spec.channels(spec.default_reader(folder_layout=False)))


