"""`python -m mmdistill.demo`: the command is mmdistill/demo/cli.py, run in the command layer's
session (SIGTERM and Ctrl-C end it as interrupted, exit 130)."""
import sys

from mmdistill.commands.session import run_command
from mmdistill.demo.cli import main

if __name__ == "__main__":
    sys.exit(run_command(main, "python -m mmdistill.demo"))
