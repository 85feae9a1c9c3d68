"""Deprecated: the demo data generator is now the package `mmdistill.demo`.

Kept so that `python -m mmdistill.data.synthetic ROOT ...` and `from mmdistill.data.synthetic
import ensure_demo_dataset` keep working; both point to the new place.
"""
import sys
import warnings

from mmdistill.demo import (ACTIONS, COCO17_JOINTS, DEFAULT_ROOT, DemoClip, demo_data_params,  # noqa: F401
                            ensure_demo_dataset, generate_demo_dataset, render_clip)
from mmdistill.demo.cli import main as _main

_MOVED = 'mmdistill.data.synthetic moved to mmdistill.demo'

if __name__ == '__main__':
    print(f'Note: {_MOVED}; use `python -m mmdistill.demo` (this name will be removed).',
          file=sys.stderr)
    _main(prog='python -m mmdistill.data.synthetic')
else:
    warnings.warn(f'{_MOVED}; import from mmdistill.demo instead.', DeprecationWarning, stacklevel=2)
