"""metrics.jsonl: its owner appends records and, on resume, drops those after the checkpoint."""
import json

import pytest

from mmdistill.tracking import MetricsFile


def test_truncate_drops_later_steps_and_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"step": 2, "a": 1}, {"note": "no step"}, {"step": 4, "a": 2}, {"step": 6, "a": 3}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 8, "a"')
    assert MetricsFile(path).truncate_after(4) == 2
    assert [json.loads(line) for line in path.read_text().splitlines()] == lines[:3]
    assert MetricsFile(path).truncate_after(4) == 0
    assert MetricsFile(tmp_path / "absent.jsonl").truncate_after(4) == 0


def test_truncate_refuses_a_corrupt_middle_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\ngarbage\n{"step": 2}\n')
    with pytest.raises(ValueError, match="metrics.jsonl line 2"):
        MetricsFile(path).truncate_after(5)


def test_a_resumed_run_continues_the_file_without_duplicates(tmp_path):
    metrics = MetricsFile(tmp_path / "metrics.jsonl")
    for step in (1, 2, 3, 4):
        metrics.log({"loss": step / 10, "lr": float("nan")}, step)
    assert metrics.truncate_after(2) == 2  # the checkpoint was written at step 2
    for step in (3, 4):
        metrics.log({"loss": float(step)}, step)
    records = [json.loads(line) for line in metrics.path.read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert records[1] == {"step": 2, "loss": 0.2, "lr": "nan"}
    assert records[3] == {"step": 4, "loss": 4.0}


def test_a_summary_is_one_line_at_the_last_step_and_a_resume_drops_it(tmp_path):
    metrics = MetricsFile(tmp_path / "metrics.jsonl")
    for step in (1, 2, 3):
        metrics.log({"loss": step / 10}, step)
    metrics.summary({"fewshot/5way_1shot/acc": 61.5, "std": float("inf"), "checkpoint": "a.ckpt",
                     "table": [1, 2]})
    last = json.loads(metrics.path.read_text().splitlines()[-1])
    assert last == {"step": 3, "summary": {"fewshot/5way_1shot/acc": 61.5, "std": "inf",
                                           "checkpoint": "a.ckpt"}}
    # a new writer on the same file (a test stage alone, a resumed run) finds the last step
    MetricsFile(metrics.path).summary({"acc": 1.0})
    assert json.loads(metrics.path.read_text().splitlines()[-1]) == {"step": 3, "summary": {"acc": 1.0}}
    assert MetricsFile(metrics.path).truncate_after(3) == 2  # the resumed run writes its own
    assert all("summary" not in json.loads(line) for line in metrics.path.read_text().splitlines())
