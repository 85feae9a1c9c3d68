"""The command layer: what every command shares, and the commands that need the runner's config
parser.

    session.py        the run session (run dir, lock, console.log tee, provenance, W&B, status
                      in summary.json) and `run_command` (SIGTERM and Ctrl-C end a command as
                      `interrupted`, exit 130)
    configurables.py  the one list of modules whose gin configurables a command registers
    flags.py          --gin_file/--gin-file and --gin_param/--gin-param, spelled alike everywhere
    data.py           `python -m mmdistill.data check|stats|cache`

The commands themselves are run.py, `mmdistill/eval/__main__.py`, `mmdistill/prepare/__main__.py`,
`mmdistill/ckpt/command.py`, `mmdistill/demo/cli.py` and `data.py` here. Library packages
(data/, models/, ckpt/, eval/, train/) never import this layer; a package's `__main__.py` is the
command's spelling (`python -m mmdistill.data`) and may.
"""
