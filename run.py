#!/usr/bin/env python
"""mmdistill command line: gin files and bindings in, one experiment out.

    python run.py --gin_file gin/tennis.gin --gin_param 'train.lr=1e-3'
"""
from __future__ import annotations

import argparse
import re
import sys
import traceback
from pathlib import Path

from mmdistill.commands.configurables import import_configurables  # noqa: F401  (tests call it here)
from mmdistill.commands.flags import add_gin_flags
from mmdistill.commands.session import run_command

EXAMPLE = """examples:
  python run.py --gin_file gin/demo.gin
  python run.py --gin_file gin/tennis.gin --gin_param 'train.epochs=10' \\
                --gin_param "experiment.name='lr-sweep'"
  python run.py --gin_file gin/tennis.gin --gin_param 'experiment.train=False' \\
                --gin_param 'experiment.test=True' --gin_param "experiment.ckpt_path='output/.../last.ckpt'"

W&B sweep agents may also pass --<configurable>.<param>=<value>; each becomes a gin binding."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py", description=__doc__.split("\n")[0], epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_gin_flags(parser, extra_param_names=("--gin_bindings",))
    return parser


# --- errors: a bad input's cause plainly and last; a bug's traceback in full ------------------

# gin appends one such line per configurable the error passed through.
GIN_CALL_LINE = re.compile(r"^\s*In call to configurable '[^']*' \(<.*>\)$")
WORKER_TRACEBACK = "Original Traceback (most recent call last):"


def _ours(filename: str, code_line: str | None) -> bool:
    """An error mmdistill raised on purpose: a `raise` statement in the package or here."""
    import mmdistill

    path = Path(filename).resolve()
    ours = path.is_relative_to(Path(mmdistill.__file__).resolve().parent)
    return ((ours or path == Path(__file__).resolve())
            and (code_line or "").lstrip().startswith("raise"))


def expected_cause(err: BaseException) -> str | None:
    """The one-line cause of an error mmdistill raised about its input (a bad clip, setting,
    checkpoint, busy run directory), or None for anything else, which is a bug to report.

    Errors of the project's own classes count, and built-in ones (ValueError,
    FileNotFoundError ...) raised by a `raise` in mmdistill; a DataLoader worker's error is
    judged by the traceback torch copies into its message."""
    if not isinstance(err, Exception):
        return None
    message = "\n".join(line for line in str(err).splitlines() if not GIN_CALL_LINE.match(line))
    if WORKER_TRACEBACK in message:
        return _worker_cause(message)
    own_class = any(c.__module__.split(".")[0] == "mmdistill" for c in type(err).__mro__)
    frames = traceback.extract_tb(err.__traceback__)
    if own_class or (frames and _ours(frames[-1].filename, frames[-1].line)):
        return message.strip() or type(err).__name__
    return None


def _worker_cause(message: str) -> str | None:
    """`Caught BadClipError in DataLoader worker process 0. Original Traceback ...`: the last
    frame and the exception line(s) of the copied traceback."""
    lines = message.split(WORKER_TRACEBACK)[-1].splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
    if not frames:
        return None
    last = frames[-1]
    where = re.match(r'  File "(.*)", line \d+', lines[last])
    code = lines[last + 1] if last + 1 < len(lines) else ""
    rest = lines[last + 1:]
    while rest and rest[0].startswith("    "):  # the code line and its ^^^ markers
        rest = rest[1:]
    exception = "\n".join(rest).strip()
    name, _, text = exception.partition(": ")
    if not (name.startswith("mmdistill.") or (where and _ours(where.group(1), code))):
        return None
    return text.strip() or name


def report_expected(err: BaseException, cause: str) -> None:
    """The cause as the terminal's last line, after where the traceback is: the run's
    console.log (the experiment wrote it there). An error before any run directory existed (a
    setting refused up front) has no traceback worth keeping."""
    log = getattr(err, "console_log", None)
    if log is not None:
        print(f"run.py: the full traceback is in {log}", file=sys.stderr)
    print(f"run.py: error: {cause}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return run_command(lambda: _main(argv), "run.py")


def _main(argv: list[str]) -> int:
    if not argv:  # a run needs at least a gin file or a binding; never start one named `run`
        build_parser().print_help(sys.stderr)
        print("\nrun.py: error: nothing to run: pass --gin_file (see the examples above)",
              file=sys.stderr)
        return 2
    args, rest = build_parser().parse_known_args(argv)
    from mmdistill.config import ConfigError, parse_config, sweep_args_to_bindings

    import_configurables()
    try:
        bindings = args.gin_param + sweep_args_to_bindings(rest)
        parse_config(args.gin_file, bindings)
    except ConfigError as err:
        print(f"run.py: error: {err}", file=sys.stderr)
        return 2
    from mmdistill.experiment import experiment
    from mmdistill.pipeline import pipeline_configured, run_pipeline

    config_name = Path(args.gin_file[-1]).stem if args.gin_file else "run"
    command = [sys.argv[0], *argv]
    try:
        if pipeline_configured():
            run_pipeline(config_name, bindings, argv=command, gin_files=args.gin_file)
        else:
            experiment(config_name=config_name, argv=command)
    except Exception as err:
        cause = expected_cause(err)
        if cause is None:
            raise  # a bug: its traceback in full
        report_expected(err, cause)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
