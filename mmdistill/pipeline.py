"""Several experiments in one command (the demo: pretrain three teachers, then distil and
evaluate). Each step is a complete experiment described by its own gin file(s), parsed afresh
with the command line's --gin_param bindings on top, so every step has its own run directory,
operative config and W&B run, and all steps share the W&B group of the pipeline's gin file.

Steps get a fresh config instead of a gin scope because gin applies a scoped binding only where
its scope is a prefix of the active scope: `unlabeled/clip_data.*` would not reach a dataset
built inside a `pretrain_rgb` step scope.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import traceback
import shutil
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import gin
from filelock import FileLock, Timeout

from mmdistill.config import parse_config
from mmdistill.experiment import experiment


@gin.configurable("pipeline")
def pipeline_settings(steps: Mapping[str, str | Sequence[str]] | None = None,
                      setup: Callable[[], object] | None = None,
                      outputs: Mapping[str, str] | None = None,
                      background: Mapping[str, str] | None = None) -> dict:
    """steps: step name -> gin file(s) of that step, run in order.
    setup: called once before the steps (e.g. @demo_data_cache writes the demo data).
    outputs: step -> path where that step's final checkpoint is kept. A step whose output exists
    is skipped (reruns reuse teachers; a warning names the --gin_param bindings that differ from
    the run that made it, recorded beside it); an existing file is never replaced.
    background: step -> the later step that needs it. The step runs in a second process started
    with the pipeline (after setup), beside the other steps, and the named step waits for it: on
    two cores, a step that needs no other step's output (the teacher control reads no teacher
    checkpoint) then costs little wall time. Only for such steps: nothing checks what it reads."""
    steps = {name: [files] if isinstance(files, str) else list(files)
             for name, files in (steps or {}).items()}
    outputs = dict(outputs or {})
    unknown = set(outputs) - set(steps)
    if unknown:
        raise ValueError(f"pipeline.outputs names {sorted(unknown)}, which are not steps {list(steps)}")
    background = dict(background or {})
    for step, waiter in background.items():
        if step not in steps or waiter not in steps:
            raise ValueError(f"pipeline.background = {{{step!r}: {waiter!r}}} names a step that is "
                             f"not in pipeline.steps {list(steps)}")
        if list(steps).index(waiter) < list(steps).index(step) or waiter in background:
            raise ValueError(f"pipeline.background: '{step}' must come before '{waiter}' in "
                             f"pipeline.steps, and '{waiter}' must run in the foreground")
    return {"steps": steps, "setup": setup, "outputs": outputs, "background": background}


def pipeline_configured() -> bool:
    try:
        return bool(gin.query_parameter("pipeline.steps"))
    except ValueError:
        return False


def run_pipeline(config_name: str, bindings: Sequence[str], argv: list[str] | None = None) -> dict:
    """Run the steps of the parsed pipeline config; `bindings` are re-applied to every step.

    Step files are parsed with the configurables the caller imported before it parsed the
    pipeline's own file (run.py's `import_configurables`), so a step may bind what that file may.
    """
    settings = pipeline_settings()
    if settings["setup"] is not None:
        settings["setup"]()
    background = dict(settings.get("background") or {})
    results, timings = {}, {}

    def arguments(step: str) -> tuple:
        output = Path(settings["outputs"][step]) if step in settings["outputs"] else None
        return step, settings["steps"][step], output, config_name, bindings, argv

    children = {step: _start_in_background(arguments(step)) for step in background}
    try:
        for step in settings["steps"]:
            for waited in [s for s, waiter in background.items() if waiter == step]:
                results[waited], seconds = _join(waited, children.pop(waited))
                if seconds is not None:
                    timings[waited] = seconds
            if step not in background:
                results[step], seconds = _run_step(*arguments(step))
                if seconds is not None:
                    timings[step] = seconds
    finally:
        for step, (process, _) in children.items():  # a foreground step failed: stop them too
            print(f"[pipeline] stopping {step} (second process, pid {process.pid})", flush=True)
            process.terminate()
            process.join()
    print("[pipeline] seconds per step: "
          + ", ".join(f"{step} {seconds}" for step, seconds in timings.items())
          + (f" ({', '.join(background)} in a second process)" if background else ""), flush=True)
    return {"steps": results, "seconds": timings}


def _run_step(step: str, files: list[str], output: Path | None, config_name: str,
              bindings: Sequence[str], argv) -> tuple[dict, float | None]:
    """One step: skipped when its kept output exists, else parsed afresh and run."""
    with _making(output):
        if output is not None and output.is_file():
            print(f"[pipeline] {step}: skipped, {output} exists (delete it to redo this step)",
                  flush=True)
            _warn_if_made_otherwise(output, bindings)
            return {"status": "skipped", "checkpoint": str(output)}, None
        print(f"[pipeline] {step}: {' '.join(files)}", flush=True)
        began = time.perf_counter()
        gin.clear_config()
        parse_config(files, bindings)
        summary = experiment(config_name=config_name, step=step, argv=argv)
        seconds = round(time.perf_counter() - began, 1)
        if output is not None:
            if not summary.get("checkpoint"):
                raise ValueError(f"pipeline.outputs names a file for step '{step}', but that "
                                 f"step trained no checkpoint (experiment.train=False or an "
                                 f"evaluate task); drop it from pipeline.outputs")
            _keep(Path(summary["checkpoint"]), output, bindings)
        return summary, seconds


def _start_in_background(arguments: tuple):
    """A forked process running `_run_step(*arguments)`; it sends back its result or the error.

    Forked, not spawned: the child has the configurables run.py imported and the setup's effects,
    and starts before any step has started threads or a W&B run in this process."""
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)

    def target() -> None:
        try:
            send.send(("ok", _run_step(*arguments)))
        except BaseException:  # noqa: BLE001 - sent to the parent, which raises it when it waits
            send.send(("error", traceback.format_exc()))

    process = multiprocessing.get_context("fork").Process(target=target,
                                                          name=f"step-{arguments[0]}")
    process.start()
    print(f"[pipeline] {arguments[0]}: started in a second process (pid {process.pid})",
          flush=True)
    return process, receive


def _join(step: str, child) -> tuple[dict, float | None]:
    """Wait for a background step: (its summary, seconds), or raise with its traceback."""
    process, receive = child
    print(f"[pipeline] waiting for {step} (second process)", flush=True)
    try:
        status, detail = receive.recv()
    except EOFError:  # the child died without a word (killed, out of memory)
        status, detail = "error", f"the process ended with exit code {process.exitcode}"
    process.join()
    if status != "ok":
        raise RuntimeError(f"pipeline step '{step}' failed in its second process:\n{detail}")
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


def _made_with(output: Path) -> Path:
    """Beside a kept output: the command-line bindings of the pipeline run that made it."""
    return output.with_name(output.name + ".made_with.json")


def _warn_if_made_otherwise(output: Path, bindings: Sequence[str]) -> None:
    """A kept output is reused whatever the command line says now (a rerun with another
    `evaluate.*` binding must not retrain the teachers), so say it when the run that made it had
    other --gin_param bindings: `demo_data.seed=1` in a folder whose teachers were made with seed
    0 would otherwise compare seed-0 teachers with seed-1 data without a word."""
    record = _made_with(output)
    if not record.is_file():
        return
    made = set(json.loads(record.read_text()).get("bindings", []))
    only_then, only_now = sorted(made - set(bindings)), sorted(set(bindings) - made)
    if not only_then and not only_now:
        return
    print(f"[pipeline] warning: {output} was made by a run with other --gin_param bindings "
          f"(then only: {only_then or 'none'}; now only: {only_now or 'none'}); it is reused "
          f"as it is. Delete it (and {record.name}) to make it with this run's settings, or run "
          f"from another folder.", flush=True)


def _keep(checkpoint: Path, output: Path, bindings: Sequence[str] = ()) -> None:
    if output.exists():
        raise FileExistsError(f"{output} appeared while the step ran; not replacing it")
    output.parent.mkdir(parents=True, exist_ok=True)
    record = _made_with(output)
    record_tmp = record.with_name(record.name + ".tmp")
    record_tmp.write_text(json.dumps({"bindings": list(bindings)}, indent=1) + "\n")
    record_tmp.rename(record)  # before the output: an output never stands without its record
    tmp = output.with_name(output.name + ".tmp")
    shutil.copyfile(checkpoint, tmp)
    tmp.rename(output)
    print(f"[pipeline] kept {checkpoint} as {output}", flush=True)
