"""Deprecated: the demo data generator is now the package `mmdistill.demo`.

Kept so that `python -m mmdistill.data.synthetic ROOT ...` and `from mmdistill.data.synthetic
import ensure_demo_dataset` keep working; both point to the new place.
"""
import sys
import warnings

from mmdistill.demo.actions import ACTIONS  # noqa: F401
from mmdistill.demo.cache import DEFAULT_ROOT, ensure_demo_dataset  # noqa: F401
from mmdistill.demo.clip import DemoClip, render_clip  # noqa: F401
from mmdistill.demo.figure import COCO17_JOINTS  # noqa: F401
from mmdistill.demo.writer import demo_data_params, generate_demo_dataset  # noqa: F401
from mmdistill.demo.cli import main as _main

_MOVED = 'mmdistill.data.synthetic moved to mmdistill.demo'

if __name__ == '__main__':
    print(f'Note: {_MOVED}; use `python -m mmdistill.demo` (this name will be removed).',
          file=sys.stderr)
    _main(prog='python -m mmdistill.data.synthetic')
else:
    warnings.warn(f'{_MOVED}; import from mmdistill.demo instead.', DeprecationWarning, stacklevel=2)
