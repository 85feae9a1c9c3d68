"""One live process per run directory, with real processes: a resume refused while another
process owns the run, a SIGKILLed owner's lock taken over, two racing resumes of which exactly
one proceeds, torchrun ranks sharing rank 0's ownership, and the advice given for a finished run
actually working."""
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from mmdistill import rundir
from process_kill import PAUSED

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "toy_experiment.py"
# 16 toy clips in batches of 4: 4 steps an epoch, each step logged.
SETTINGS = ["train.epochs = 3", "train.warmup_epochs = 1", "train.log_every = 1",
            "train.save_ckpt_freq = 1", "wandb_run.mode = 'disabled'"]
# Holds the lock of the run dir in argv[1] and forks a child that outlives it (a loader worker).
HOLDER = """
import multiprocessing, sys, time
from mmdistill import rundir
rundir.lock_run_dir(sys.argv[1])
child = multiprocessing.get_context('fork').Process(target=time.sleep, args=(300,))
child.start()
print(child.pid, flush=True)
time.sleep(300)
"""


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return {**env, "PYTHONPATH": str(ROOT), "CI": "true", "OMP_NUM_THREADS": "1"}


def toy(out_root: Path, *bindings: str, log: Path | None = None, launcher=()) -> subprocess.Popen:
    """The toy experiment in its own process (output to `log` when given, else a pipe)."""
    args = [*launcher, str(SCRIPT), *SETTINGS, f"experiment.output_root = '{out_root}'", *bindings]
    output = log.open("w") if log else subprocess.PIPE
    return subprocess.Popen([sys.executable, *args], env=_env(), stdout=output,
                            stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float = 180) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def interrupted_run(out_root: Path, launcher=()) -> Path:
    """A run killed with SIGKILL right after its first epoch's checkpoint."""
    log = out_root / "interrupted.log"  # a file, not a pipe nobody reads while it runs
    process = toy(out_root, "toy_task.pause_after_epoch = 0", log=log, launcher=launcher)
    deadline = time.monotonic() + 180
    while not list(out_root.glob(f"*/*_toy/{PAUSED}")):
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    # SIGKILL the process that owns the run (rank 0's worker under torchrun, which then ends
    # the other ranks), as a crash would: its PID is in the run directory's lock record.
    (paused,) = out_root.glob(f"*/*_toy/{PAUSED}")
    os.kill(json.loads((paused.parent / ".lock").read_text())["pid"], signal.SIGKILL)
    assert process.wait(timeout=120) != 0, log.read_text()
    (run_dir,) = out_root.glob("*/*_toy")
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and not (run_dir / "summary.json").exists()
    return run_dir


def logged_steps(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [record["step"] for record in map(json.loads, lines) if "train/loss" in record]


def test_resume_refused_while_owned_then_taken_over_after_sigkill(tmp_path):
    run_dir = interrupted_run(tmp_path)
    metrics = (run_dir / "metrics.jsonl").read_bytes()
    checkpoint = (run_dir / "checkpoints" / "last.ckpt").read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], env=_env(),
                              stdout=subprocess.PIPE, text=True)
    child = int(holder.stdout.readline())
    try:
        rc, out = finish(toy(tmp_path, "experiment.resume = True"))
        assert rc != 0
        assert f"run directory {run_dir} is in use by another process: PID {holder.pid}" in out, out
        assert f"kill {holder.pid}" in out
        # refused before touching anything in the run directory
        assert (run_dir / "metrics.jsonl").read_bytes() == metrics
        assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == checkpoint

        holder.kill()
        holder.wait()
        os.kill(child, 0)  # the holder's forked child still runs, holding a copy of its descriptor
        rc, out = finish(toy(tmp_path, "experiment.resume = True"))
        assert rc == 0, out
        assert f"took over .lock from PID {holder.pid}" in out
        assert logged_steps(run_dir) == list(range(1, 13))
        assert (run_dir / ".lock").read_text() == ""  # released cleanly: no owner left behind
    finally:
        holder.kill()
        holder.wait()
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_two_concurrent_resumes_exactly_one_proceeds(tmp_path):
    run_dir = interrupted_run(tmp_path)
    gate = tmp_path / "gate"
    logs = [tmp_path / f"racer{i}.log" for i in range(2)]
    # W&B on: the loser must not open a W&B run of its own with the run's id
    racers = [toy(tmp_path, "experiment.resume = True", "wandb_run.mode = 'offline'",
                  f"toy_task.wait_for = '{gate}'", log=log) for log in logs]
    try:
        deadline = time.monotonic() + 180
        while all(racer.poll() is None for racer in racers) and time.monotonic() < deadline:
            time.sleep(0.1)
        finished = [i for i, racer in enumerate(racers) if racer.poll() is not None]
        assert len(finished) == 1, "neither racer ended while the other waited at the gate"
        loser, winner = finished[0], 1 - finished[0]
        gate.touch()
        assert racers[winner].wait(timeout=180) == 0, logs[winner].read_text()
    finally:
        gate.touch()
        for racer in racers:
            racer.wait(timeout=180)
    assert racers[loser].returncode != 0
    assert (f"run directory {run_dir} is in use by another process: PID {racers[winner].pid}"
            in logs[loser].read_text()), logs[loser].read_text()
    assert logged_steps(run_dir) == list(range(1, 13))  # steps 5..12 once, from the winner only
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1  # the winner's


def test_torchrun_ranks_share_rank_zeros_ownership(tmp_path):
    def launcher():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return ["-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                f"--master_port={port}"]

    # 2 ranks x 4 clips a step: 2 steps an epoch
    run_dir = interrupted_run(tmp_path, launcher())
    rc, out = finish(toy(tmp_path, "experiment.resume = True", launcher=launcher()))
    assert rc == 0, out
    assert logged_steps(run_dir) == list(range(1, 7))


def test_advice_for_a_finished_run_works_as_written(tmp_path):
    rc, out = finish(toy(tmp_path, "train.epochs = 2"))
    assert rc == 0, out
    (run_dir,) = tmp_path.glob("*/*_toy")
    original = {name: (run_dir / name).read_bytes() for name in ("summary.json", "metrics.jsonl")}

    rc, out = finish(toy(tmp_path, "train.epochs = 3", "experiment.resume = True"))
    assert rc != 0 and "finished already" in out, out
    copy_command = next(line.strip() for line in out.splitlines() if line.strip().startswith("cp -r"))
    rerun = shlex.split(next(line for line in out.splitlines() if "then its command" in line))
    resume_binding = rerun[rerun.index("--gin_param", rerun.index("train.epochs=<more>")) + 1]
    subprocess.run(["bash", "-c", copy_command], check=True)

    rc, out = finish(toy(tmp_path, "train.epochs = 3", resume_binding))
    assert rc == 0, out
    copy = run_dir.with_name(run_dir.name + "-continued")
    assert "resumed from" in out and str(copy) in out
    assert logged_steps(copy) == list(range(1, 13))  # 8 steps copied, 4 more trained
    assert json.loads((copy / "summary.json").read_text())["status"] == "finished"
    assert {name: (run_dir / name).read_bytes() for name in original} == original


def test_lock_is_reentrant_in_its_process_and_released_by_hold_lock(tmp_path):
    rundir.lock_run_dir(tmp_path)
    rundir.lock_run_dir(tmp_path)  # the owner taking it again: no conflict with itself
    record = json.loads((tmp_path / ".lock").read_text())
    assert record["pid"] == os.getpid() and record["since"]
    with rundir.hold_lock(tmp_path):
        pass
    assert (tmp_path / ".lock").read_text() == ""
    probe = subprocess.run([sys.executable, "-c", "import sys; from mmdistill import rundir; "
                            "rundir.lock_run_dir(sys.argv[1]); print('locked')", str(tmp_path)],
                           env=_env(), capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "locked", probe.stderr


def test_a_refused_process_waits_a_moment_for_the_owner_record(tmp_path):
    """The owner writes its PID just after taking the lock; a process refused in between must
    still name it (this race made test_two_concurrent_resumes_exactly_one_proceeds flaky)."""
    import fcntl
    import threading

    import pytest

    owner_fd = os.open(tmp_path / rundir.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(owner_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held, no record yet
    record = json.dumps({"pid": 4242, "host": "here", "since": "now", "command": "x"}) + "\n"
    writer = threading.Timer(0.3, lambda: os.pwrite(owner_fd, record.encode(), 0))
    writer.start()
    try:
        with pytest.raises(rundir.RunDirBusy, match="PID 4242"):
            rundir.lock_run_dir(tmp_path)
        os.ftruncate(owner_fd, 0)  # an owner that never writes one: said so, after the wait
        with pytest.raises(rundir.RunDirBusy, match="its PID is not recorded yet"):
            rundir.lock_run_dir(tmp_path)
    finally:
        writer.join()
        os.close(owner_fd)
