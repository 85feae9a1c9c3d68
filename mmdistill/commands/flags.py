"""The gin flags every command that takes them spells alike: `--gin_file`/`--gin-file` and
`--gin_param`/`--gin-param` (run.py also keeps `--gin_bindings`)."""
from __future__ import annotations

import argparse

FILE_HELP = ("a gin file; repeatable, parsed in the order given (later files override earlier "
             "ones). Files may `include` shared bases in gin/base/.")
PARAM_HELP = ("one gin binding such as 'train.lr=1e-3'; repeatable, applied after all files so it "
              "overrides them. Strings need quotes: \"experiment.name='x'\".")


def add_gin_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, files: bool = True,
                  file_help: str = FILE_HELP, param_help: str = PARAM_HELP,
                  extra_param_names: tuple[str, ...] = ()) -> None:
    """Add `--gin_file` (unless `files` is False) and `--gin_param`, each also with a dash, as
    `args.gin_file` and `args.gin_param` (lists, empty by default)."""
    if files:
        parser.add_argument("--gin_file", "--gin-file", action="append", default=[],
                            dest="gin_file", metavar="PATH", help=file_help)
    parser.add_argument("--gin_param", "--gin-param", *extra_param_names, action="append",
                        default=[], dest="gin_param", metavar="BINDING", help=param_help)
