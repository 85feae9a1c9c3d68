"""`python -m mmdistill.ckpt inspect|export`: the command is `mmdistill.ckpt.command`, run in the
command layer's session (SIGTERM and Ctrl-C end it as interrupted, exit 130)."""
import sys

from mmdistill.ckpt.command import main
from mmdistill.commands.session import run_command

if __name__ == "__main__":
    sys.exit(run_command(main, "python -m mmdistill.ckpt"))
