#!/usr/bin/env python
"""mmdistill command line: gin files and bindings in, one experiment out.

    python run.py --gin_file gin/tennis.gin --gin_param 'train.lr=1e-3'
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

EXAMPLE = """examples:
  python run.py --gin_file gin/demo.gin
  python run.py --gin_file gin/tennis.gin --gin_param 'train.epochs=10' \\
                --gin_param "experiment.name='lr-sweep'"
  python run.py --gin_file gin/tennis.gin --gin_param 'experiment.train=False' \\
                --gin_param 'experiment.test=True' --gin_param "experiment.ckpt_path='output/.../last.ckpt'"

W&B sweep agents may also pass --<configurable>.<param>=<value>; each becomes a gin binding."""


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="run.py", description=__doc__.split("\n")[0], epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gin_file", action="append", default=[], metavar="PATH",
                        help="a gin file; repeatable, parsed in the order given (later files "
                             "override earlier ones). Files may `include` shared bases in gin/base/.")
    parser.add_argument("--gin_param", "--gin_bindings", action="append", default=[],
                        dest="gin_param", metavar="BINDING",
                        help="one gin binding such as 'train.lr=1e-3'; repeatable, applied after "
                             "all files so it overrides them. Strings need quotes: "
                             "\"experiment.name='x'\".")
    return parser.parse_known_args(argv)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, rest = parse_args(argv)
    from mmdistill.config import ConfigError, parse_config, sweep_args_to_bindings

    try:
        bindings = args.gin_param + sweep_args_to_bindings(rest)
        parse_config(args.gin_file, bindings)
    except ConfigError as err:
        print(f"run.py: error: {err}", file=sys.stderr)
        return 2
    # A scheduler's SIGTERM ends the run like Ctrl-C does: summary.json says 'interrupted' and
    # the W&B run is finished (the checkpoint of the last whole epoch is already on disk).
    signal.signal(signal.SIGTERM, _interrupt)
    from mmdistill.experiment import experiment
    from mmdistill.pipeline import pipeline_configured, run_pipeline

    config_name = Path(args.gin_file[-1]).stem if args.gin_file else "run"
    command = [sys.argv[0], *argv]
    if pipeline_configured():
        run_pipeline(config_name, bindings, argv=command)
    else:
        experiment(config_name=config_name, argv=command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
