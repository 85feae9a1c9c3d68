"""Several experiments in one command (the demo: pretrain three teachers, then distil and
evaluate). Each step is a complete experiment described by gin files plus bindings (e.g. the
shared teacher file with `pretrain.modality = 'flow'`), parsed afresh with the command line's
--gin_param bindings on top, so every step has its own run directory, operative config and W&B
run, and all steps share the W&B group of the pipeline's gin file.

Steps get a fresh config instead of a gin scope because gin applies a scoped binding only where
its scope is a prefix of the active scope: `unlabeled/clip_data.*` would not reach a dataset
built inside a `pretrain_rgb` step scope.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import re
import shlex
import traceback
import shutil
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import gin
from gin import config_parser
from filelock import FileLock, Timeout

from mmdistill.config import parse_config, resolve_gin_file
from mmdistill.experiment import experiment
from mmdistill.pipeline_record import check_kept_output, step_record, write_record
from mmdistill.tracking import import_wandb_once


def split_step(entries: str | Sequence[str]) -> tuple[list[str], list[str]]:
    """A step's entries as (gin files, bindings): an entry ending in `.gin` is a file, any other
    one a binding (`pretrain.modality = 'flow'`), applied after the files, in order."""
    entries = [entries] if isinstance(entries, str) else list(entries)
    files = [e for e in entries if e.strip().endswith(".gin")]
    return files, [e for e in entries if not e.strip().endswith(".gin")]


def step_command(files: Sequence[str], bindings: Sequence[str]) -> str:
    """The run.py command that runs a step alone (without the command line's bindings)."""
    return " ".join(["python run.py", *(f"--gin_file {f}" for f in files),
                     *(f"--gin_param {_quoted(b)}" for b in bindings)])


def _quoted(binding: str) -> str:
    """Shell quoting a reader can copy: double quotes around a binding with a quoted string."""
    if "'" in binding and not any(c in binding for c in '"$`\\!'):
        return f'"{binding}"'
    return shlex.quote(binding)


@gin.configurable("pipeline")
def pipeline_settings(steps: Mapping[str, str | Sequence[str]] | None = None,
                      setup: Callable[[], object] | None = None,
                      outputs: Mapping[str, str] | None = None,
                      every_step: str | Sequence[str] = (),
                      needs: Mapping[str, Sequence[str]] | None = None,
                      lanes: int = 1) -> dict:
    """steps: step name -> its gin files and bindings (`split_step`), run in order.
    every_step: files and bindings added to every step, after the step's own files and after
    its own bindings (e.g. a GPU-scale file on top of the CPU steps).
    setup: called once before the steps (e.g. @demo_data_cache writes the demo data).
    outputs: step -> path where that step's final checkpoint is kept. A step whose output exists
    is skipped when the config that made it (recorded beside it) gives every setting the step
    uses the same value as this run's, and refused otherwise (mmdistill/pipeline_record.py); an
    existing file is never replaced.
    needs: step -> the earlier steps whose outputs it reads (`[]`: none); a step not listed
    needs every earlier step, so a missing entry can only make the pipeline slower, never let a
    step start before what it reads exists.
    lanes: how many steps run at once. 1: one after the other, in this process. More: each step in
    a process of its own forked from this one, started as soon as the steps it needs have
    finished and a lane is free (among the ready steps, the first in `steps` order). On two
    cores, two lanes of one-threaded steps without loader workers finish the demo in about two
    thirds of the time of one lane (BENCHMARKS.md); nothing checks what a step reads beyond
    `needs`."""
    common = [every_step] if isinstance(every_step, str) else list(every_step)
    steps = {name: split_step([*([entries] if isinstance(entries, str) else entries), *common])
             for name, entries in (steps or {}).items()}
    for name, (files, _) in steps.items():
        if not files:
            raise ValueError(f"pipeline.steps['{name}'] names no gin file (an entry ending in "
                             f"'.gin'); a step is gin files plus bindings")
    outputs = dict(outputs or {})
    unknown = set(outputs) - set(steps)
    if unknown:
        raise ValueError(f"pipeline.outputs names {sorted(unknown)}, which are not steps {list(steps)}")
    order = list(steps)
    needs = dict(needs or {})
    for step, needed in needs.items():
        if isinstance(needed, str):
            raise ValueError(f"pipeline.needs['{step}'] = {needed!r}: give a list of steps, "
                             f"e.g. [{needed!r}]")
        unknown = [name for name in [step, *needed] if name not in steps]
        if unknown:
            raise ValueError(f"pipeline.needs names {unknown}, which are not steps {order}")
        later = [name for name in needed if order.index(name) >= order.index(step)]
        if later:
            raise ValueError(f"pipeline.needs['{step}'] names {later}, which do not come before "
                             f"'{step}' in pipeline.steps; list a step after the steps it needs")
    needs = {step: list(needs.get(step, order[:i])) for i, step in enumerate(order)}
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        raise ValueError(f"pipeline.lanes must be a positive integer, got {lanes!r}")
    return {"steps": steps, "setup": setup, "outputs": outputs, "needs": needs, "lanes": lanes}


def check_pipeline_file(path: str | Path) -> None:
    """Refuse what a pipeline's own file binds that no step would see.

    Each step is parsed from its own gin files plus the command line's bindings, not from the
    pipeline's file, so a binding written there (`train.lr = 1e-3`, or a macro such as
    `EVAL_CLIPS = ...` that the steps' shared file also sets) would be silently ignored by every
    step. The file may bind `pipeline.*`, the configurable its `pipeline.setup` names (it runs in
    this process) and macros that the file itself uses (`%NAME`); what it includes is not checked
    (the steps include the same shared files)."""
    path = resolve_gin_file(path)
    if not path.is_file():  # not a file run.py parsed (a caller's stand-in): nothing to read
        return
    text = path.read_text()
    statements = list(config_parser.ConfigParser(text, gin.config.ParserDelegate(skip_unknown=True)))
    setup = {s.value.selector for s in statements
             if isinstance(s, config_parser.BindingStatement) and s.selector == "pipeline"
             and s.arg_name == "setup" and hasattr(s.value, "selector")}
    ignored = []
    for statement in statements:
        if not isinstance(statement, config_parser.BindingStatement):
            continue
        name = statement.selector.split(".")[-1]
        if statement.arg_name == "":  # a macro: fine when this file uses it
            if not re.search(rf"%{re.escape(statement.selector)}\b", text):
                ignored.append(statement.selector)
        elif name != "pipeline" and name not in setup:
            scope = f"{statement.scope}/" if statement.scope else ""
            ignored.append(f"{scope}{statement.selector}.{statement.arg_name}")
    if ignored:
        raise ValueError(
            f"{path} binds {', '.join(ignored)}, which no step of the pipeline sees: each step is "
            f"parsed from its own gin files and the command line's --gin_param only. Put it in "
            f"the file the steps share, in a step's entries or in pipeline.every_step, or pass it "
            f"with --gin_param")


def pipeline_configured() -> bool:
    try:
        return bool(gin.query_parameter("pipeline.steps"))
    except ValueError:
        return False


def run_pipeline(config_name: str, bindings: Sequence[str], argv: list[str] | None = None,
                 gin_files: Sequence[str] = ()) -> dict:
    """Run the steps of the parsed pipeline config; `bindings` are re-applied to every step, and
    so is every `gin_files` file after the first (the pipeline's own), parsed after the step's
    files.

    Step files are parsed with the configurables the caller imported before it parsed the
    pipeline's own file (`commands.configurables`), so a step may bind what that file may.
    """
    settings = pipeline_settings()
    if gin_files:
        check_pipeline_file(gin_files[0])
    extra_files = [str(path) for path in list(gin_files)[1:]]
    if settings["setup"] is not None:
        settings["setup"]()

    def arguments(step: str) -> tuple:
        output = Path(settings["outputs"][step]) if step in settings["outputs"] else None
        files, step_bindings = settings["steps"][step]
        return step, [*files, *extra_files], step_bindings, output, config_name, bindings, argv

    lanes = settings.get("lanes", 1)
    if lanes == 1:
        results = {step: _run_step(*arguments(step)) for step in settings["steps"]}
    else:
        results = _run_in_lanes(settings["steps"], settings["needs"], lanes, arguments)
    timings = {step: seconds for step, (_, seconds) in results.items() if seconds is not None}
    print("[pipeline] seconds per step: "
          + ", ".join(f"{step} {seconds}" for step, seconds in timings.items())
          + (f" ({lanes} lanes)" if lanes > 1 else ""), flush=True)
    return {"steps": {step: summary for step, (summary, _) in results.items()},
            "seconds": timings}


def _run_in_lanes(steps: Sequence[str], needs: Mapping[str, list[str]], lanes: int,
                  arguments: Callable[[str], tuple]) -> dict:
    """Every step in a forked process, at most `lanes` at once, each once its needs are done."""
    import_wandb_once()  # each forked step would import it again otherwise
    pending, running, results = list(steps), {}, {}
    try:
        while pending or running:
            for step in [s for s in pending if set(needs[s]) <= set(results)]:
                if len(running) == lanes:
                    break
                pending.remove(step)
                running[step] = _start_step(arguments(step))
            finished = multiprocessing.connection.wait([receive for _, receive in running.values()])
            for step in [s for s, (_, receive) in running.items() if receive in finished]:
                results[step] = _join(step, running.pop(step))
    finally:
        for step, (process, _) in running.items():  # a step failed or Ctrl-C: stop the others
            print(f"[pipeline] stopping {step} (pid {process.pid})", flush=True)
            process.terminate()
            process.join()
    return {step: results[step] for step in steps}


def step_argv(argv: Sequence[str] | None, files: Sequence[str],
              bindings: Sequence[str]) -> list[str]:
    """The argv that runs one step alone (its command.txt): the step's gin files, its own
    bindings and the pipeline's, as the step parsed them."""
    program = argv[0] if argv else "run.py"
    return [program, *(arg for path in files for arg in ("--gin_file", str(path))),
            *(arg for binding in bindings for arg in ("--gin_param", binding))]


def _run_step(step: str, files: list[str], step_bindings: list[str], output: Path | None,
              config_name: str, bindings: Sequence[str], argv) -> tuple[dict, float | None]:
    """One step, parsed afresh: skipped when its kept output exists and was made with this
    config (refused when made with another), else run."""
    with _making(output):
        gin.clear_config()
        parse_config(files, [*step_bindings, *bindings])
        if output is not None and output.is_file():
            check_kept_output(output, step, bindings)
            print(f"[pipeline] {step}: skipped, {output} exists, made with this config "
                  f"(delete it to redo this step)", flush=True)
            return {"status": "skipped", "checkpoint": str(output)}, None
        print(f"[pipeline] {step}: {step_command(files, step_bindings)}", flush=True)
        began = time.perf_counter()
        summary = experiment(config_name=config_name, step=step,
                             argv=step_argv(argv, files, [*step_bindings, *bindings]))
        seconds = round(time.perf_counter() - began, 1)
        if output is not None:
            if not summary.get("checkpoint"):
                raise ValueError(f"pipeline.outputs names a file for step '{step}', but that "
                                 f"step trained no checkpoint (experiment.train=False or an "
                                 f"evaluate task); drop it from pipeline.outputs")
            _keep(Path(summary["checkpoint"]), output, step_record(bindings))
        return summary, seconds


def _start_step(arguments: tuple):
    """A forked process running `_run_step(*arguments)`; it sends back its result or the error.

    Forked, not spawned: the child has the configurables run.py imported and the setup's effects;
    with lanes this process runs no step itself, so it never forks with a step's threads or W&B
    run alive."""
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)

    def target() -> None:
        try:
            send.send(("ok", _run_step(*arguments)))
        except BaseException:  # noqa: BLE001 - sent to the parent, which raises it when it waits
            send.send(("error", traceback.format_exc()))

    process = multiprocessing.get_context("fork").Process(target=target,
                                                          name=f"step-{arguments[0]}")
    process.start()
    print(f"[pipeline] {arguments[0]}: started (pid {process.pid})", flush=True)
    return process, receive


def _join(step: str, child) -> tuple[dict, float | None]:
    """A lane's step, finished: (its summary, seconds), or raise with its traceback."""
    process, receive = child
    try:
        status, detail = receive.recv()
    except EOFError:  # the child died without a word (killed, out of memory)
        status, detail = "error", f"the process ended with exit code {process.exitcode}"
    process.join()
    if status != "ok":
        raise RuntimeError(f"pipeline step '{step}' failed in its process:\n{detail}")
    return detail


@contextlib.contextmanager
def _making(output: Path | None):
    """One pipeline at a time makes a step's kept output: a second one started on the same cache
    waits here, then finds the output made and skips the step instead of training it again."""
    if output is None:
        yield
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(output.with_name(output.name + ".lock"))  # released by the OS if we die
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"[pipeline] waiting for another process that is making {output}", flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _keep(checkpoint: Path, output: Path, record: dict) -> None:
    if output.exists():
        raise FileExistsError(f"{output} appeared while the step ran; not replacing it")
    output.parent.mkdir(parents=True, exist_ok=True)
    write_record(output, record)  # before the output: an output never stands without its record
    tmp = output.with_name(output.name + ".tmp")
    shutil.copyfile(checkpoint, tmp)
    tmp.rename(output)
    print(f"[pipeline] kept {checkpoint} as {output}", flush=True)
