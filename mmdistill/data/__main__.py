"""`python -m mmdistill.data`: the command lives in the command layer, mmdistill/commands/data.py."""
import sys

from mmdistill.commands.data import main

if __name__ == "__main__":
    sys.exit(main())
