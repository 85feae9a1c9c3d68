"""`python -m mmdistill.ckpt inspect|export`: the command is `mmdistill.ckpt.command`."""
import sys

from mmdistill.ckpt.command import main

if __name__ == "__main__":
    sys.exit(main())
