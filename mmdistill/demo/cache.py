"""The demo data cache (gin: `demo_data_cache`): generate once, reuse after, safe to share.

Any number of processes may call `ensure_demo_dataset` on the same root at once (two demos
started together, or every rank of a distributed run): one generates while the others wait on
the lock (atomic.py) and then reuse what it wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import gin

from mmdistill.demo.atomic import exclusive, publish, remove_leftovers
from mmdistill.demo.writer import (GENERATOR, GENERATOR_VERSION, MANIFEST_FILE, OWNED_ENTRIES,
                                   check_params, demo_data_params, write_dataset)

DEFAULT_ROOT = '.cache/demo_data'  # relative to the working directory; .cache/ is git-ignored
# Manifests written before the generator moved to mmdistill.demo name its old module; the data
# they describe is the same, so those caches stay valid.
OUR_GENERATORS = (GENERATOR, 'mmdistill.data.synthetic')


@gin.configurable('demo_data_cache', allowlist=['root'])
def ensure_demo_dataset(root=DEFAULT_ROOT, progress=True, **overrides):
    """Return `root` holding the demo dataset, generating it only when needed.

    Reuses a complete dataset whose manifest matches the parameters; replaces one this generator
    wrote with other parameters (or left incomplete); refuses any folder it did not write.
    """
    root = Path(root)
    params = demo_data_params(**overrides)
    if _matches(_read_manifest(root), params):
        return root
    check_params(params)
    with exclusive(root) as waited:
        remove_leftovers(root, OWNED_ENTRIES)
        manifest = _read_manifest(root)  # again: the process we waited for may have written it
        if _matches(manifest, params):
            if waited:
                print(f'Demo data in {root} was written meanwhile by the process waited for; '
                      f'reusing it.')
            return root
        if manifest is not None:
            _refuse_foreign_files(root)
            why = 'was incomplete' if not manifest.get('complete') else 'had other parameters'
            print(f'Demo data in {root} {why}; regenerating it.')
        elif root.exists() and any(root.iterdir()):
            raise FileExistsError(
                f'{root} exists, is not empty and has no {MANIFEST_FILE} from the demo generator, '
                f'so it is not demo data this program wrote. It was left untouched. Point the '
                f'demo data root at a new or empty folder instead.')
        else:
            print(f'Writing the synthetic demo dataset to {root} (first run only).', flush=True)
        publish(root, lambda folder: write_dataset(folder, params, progress, root), OWNED_ENTRIES,
                replace=manifest is not None)
    return root


def _matches(manifest, params):
    return (manifest is not None and manifest.get('complete') is True
            and manifest.get('params') == params and manifest.get('version') == GENERATOR_VERSION)


def _read_manifest(root):
    path = root / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f'{path} is not valid JSON ({error}); this folder was not written by '
                         f'the demo generator or is damaged. Delete it or use another root.')
    if not isinstance(manifest, dict) or manifest.get('generator') not in OUR_GENERATORS:
        raise FileExistsError(f'{path} was not written by {GENERATOR}; leaving {root} untouched. '
                              f'Point the demo data root at a new or empty folder.')
    return manifest


def _refuse_foreign_files(root):
    foreign = sorted(p.name for p in root.iterdir() if p.name not in OWNED_ENTRIES)
    if foreign:
        raise FileExistsError(f'{root} holds demo data that needs regenerating, but also files '
                              f'the generator did not write ({", ".join(foreign)}); nothing was '
                              f'deleted. Move those files out or use another root.')
