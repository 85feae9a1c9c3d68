"""The training loop with a toy objective: what is trained, accumulation, non-finite steps,
logging cadence, schedule and checkpoint files."""
import math

import gin
import pytest
import torch
from toy_objective import ToyDataset, ToyObjective, make_loader

from context_factories import cpu_context
from mmdistill.train import optim, training_checkpoint
from mmdistill.train.loop import train
from mmdistill.train.step import TrainStep

FAST = dict(epochs=2, warmup_epochs=1, lr=0.5, scale_lr=False, log_every=1, save_ckpt_freq=1)


def params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def run(tmp_path, objective=None, batch_size=4, n=16, **settings):
    objective = objective or ToyObjective()
    ctx = cpu_context(tmp_path)
    summary = train(objective, make_loader(ToyDataset(n=n), batch_size), ctx, **{**FAST, **settings})
    return objective, ctx, summary


def test_teacher_is_untouched_and_only_student_and_heads_are_optimised(tmp_path):
    objective = ToyObjective()
    teacher_before, student_before = params(objective.teacher), params(objective.student)
    run(tmp_path, objective)
    assert all(torch.equal(v, params(objective.teacher)[k]) for k, v in teacher_before.items())
    assert not torch.equal(student_before["proj.weight"], objective.student.proj.weight)

    optimizer = optim.build_optimizer(objective.trainable_modules(), lr=1.0, weight_decay=0.05)
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in objective.trainable_modules().parameters()}
    assert not in_optimizer & {id(p) for p in objective.teacher.parameters()}
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {id(p): n for n, p in objective.trainable_modules().named_parameters()}
    assert sorted(names[i] for i in decayed) == ["heads.a.weight", "heads.b.weight",
                                                 "student.proj.weight"]  # no pos, norms, biases


def test_a_trainable_looking_frozen_part_is_refused(tmp_path):
    objective = ToyObjective()
    objective.teacher.requires_grad_(True)
    with pytest.raises(ValueError, match="teacher.weight.*requires_grad_"):
        run(tmp_path, objective)


def test_accumulating_micro_batches_equals_one_larger_batch(tmp_path):
    whole, _, _ = run(tmp_path / "a", batch_size=8, accum_steps=1, clip_grad=1.0)
    accumulated, _, summary = run(tmp_path / "b", batch_size=4, accum_steps=2, clip_grad=1.0)
    assert summary["global_step"] == 4  # 16 clips / 8 per step x 2 epochs
    for name, value in params(whole.trainable_modules()).items():
        torch.testing.assert_close(params(accumulated.trainable_modules())[name], value,
                                   rtol=1e-5, atol=1e-6, msg=name)


def test_a_non_finite_step_is_skipped_without_touching_weights(tmp_path):
    objective = ToyObjective()
    optimizer = optim.build_optimizer(objective.trainable_modules(), lr=0.5)
    step = TrainStep(objective, optimizer, device=torch.device("cpu"), accum_steps=2)
    batches = [next(iter(make_loader(ToyDataset(), 4)))] * 2
    objective.nonfinite_calls = {1}  # the second micro-batch
    before = params(objective.trainable_modules())
    result = step(batches)
    assert result.skipped and math.isnan(result.losses["loss"].item())
    assert all(torch.equal(v, params(objective.trainable_modules())[k]) for k, v in before.items())
    assert not optimizer.state  # AdamW moments untouched
    assert all(p.grad is None for p in objective.trainable_modules().parameters())
    result = step(batches)
    assert not result.skipped and result.clips == 8 and math.isfinite(result.grad_norm.item())


def test_skipped_steps_are_counted_and_logged(tmp_path):
    objective = ToyObjective()
    objective.nonfinite_calls = {1, 5}
    _, ctx, summary = run(tmp_path, objective)
    assert summary["train/nonfinite_steps"] == 2
    epoch_counts = [v for _, v in ctx.logger.series("train/epoch_nonfinite_steps")]
    assert epoch_counts == [1, 1]
    assert all(math.isfinite(v) for _, v in ctx.logger.series("train/loss"))
    assert all(torch.isfinite(p).all() for p in objective.parameters())


def test_consecutive_non_finite_steps_stop_the_run_and_keep_the_checkpoint(tmp_path):
    objective = ToyObjective()
    objective.nonfinite_calls = set(range(4, 100))  # epoch 0 (4 steps) is fine, then only NaN
    with pytest.raises(RuntimeError, match="3 consecutive.*last good checkpoint is .*last.ckpt"):
        run(tmp_path, objective, epochs=3, max_nonfinite=3)
    saved = training_checkpoint.load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert saved["epoch"] == 0 and saved["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_logging_cadence_schedule_and_epoch_averages(tmp_path):
    _, ctx, summary = run(tmp_path, n=32, batch_size=4, epochs=3, warmup_epochs=1, log_every=3,
                          lr=1.0, scale_lr=True, min_lr=1e-4, warmup_lr=0.0)
    logged = ctx.logger.series("train/loss")
    assert [s for s, _ in logged] == [3, 6, 9, 12, 15, 18, 21, 24]  # 8 steps/epoch
    first = dict(ctx.logger.history[0][1])
    for key in ("train/loss_a", "train/loss_b", "train/lr", "train/grad_norm", "train/clips_per_s",
                "train/data_wait", "epoch"):
        assert key in first, key
    assert 0 <= first["train/data_wait"] < 1 and first["train/clips_per_s"] > 0
    lrs = [v for _, v in ctx.logger.series("train/lr")]
    peak = 1.0 * 4 / 256  # lr scaled by batch / 256
    assert lrs[0] == pytest.approx(peak * 2 / 8)  # step 3 uses the lr after 2 warmup steps
    assert max(lrs) <= peak + 1e-12 and lrs == sorted(lrs[:2]) + sorted(lrs[2:], reverse=True)
    epochs = ctx.logger.series("train/epoch_loss")
    assert [s for s, _ in epochs] == [8, 16, 24]
    assert summary["train/epoch_loss"] == epochs[-1][1] and summary["global_step"] == 24
    assert ctx.logger.summary_values["global_step"] == 24


def test_checkpoints_follow_the_cadence_and_hold_the_run_state(tmp_path):
    gin.parse_config("train.keep_last_k = 2")  # users set loop knobs by gin
    _, ctx, _ = run(tmp_path, epochs=6, save_ckpt_freq=2)
    names = sorted(p.name for p in ctx.checkpoints_dir.iterdir())
    assert [n.split("-")[0] for n in names] == ["epoch=03", "epoch=05", "last.ckpt"]
    saved = training_checkpoint.load_checkpoint(ctx.checkpoints_dir / "last.ckpt")
    for key in ("format", "version", "model", "arch", "optimizer", "scaler", "scheduler", "epoch",
                "global_step", "rng", "data_state", "gin_config", "wandb_run_id", "metrics"):
        assert key in saved, key
    assert saved["epoch"] == 5 and saved["global_step"] == 24
    assert {k.split(".")[0] for k in saved["model"]} == {"student", "heads"}
    assert "heads.a.weight" in saved["model"] and not any("teacher" in k for k in saved["model"])
    assert saved["data_state"] == {"seed": 0, "epoch": 5, "steps_per_epoch": 4, "total_batch": 4}
    assert saved["metrics"]["train/epoch_loss"] == pytest.approx(float(names[1].split("=")[-1][:-5]),
                                                                 abs=1e-4)


def test_bf16_autocast_trains(tmp_path):
    objective = ToyObjective()
    ctx = cpu_context(tmp_path, amp_dtype=torch.bfloat16)
    summary = train(objective, make_loader(ToyDataset(), 4), ctx, **FAST)
    assert math.isfinite(summary["train/epoch_loss"]) and summary["train/nonfinite_steps"] == 0
    assert objective.student.proj.weight.dtype == torch.float32  # autocast, not a cast of weights


def test_resume_refuses_a_different_seed(tmp_path):
    run(tmp_path / "first")
    ctx = cpu_context(tmp_path / "second", seed=5)
    with pytest.raises(ValueError, match="seed 0.*experiment.seed=0"):
        train(ToyObjective(), make_loader(ToyDataset(n=16), 4), ctx, **FAST,
              resume_from=tmp_path / "first" / "checkpoints" / "last.ckpt")


def test_fp16_uses_a_grad_scaler_that_survives_a_skipped_step(tmp_path):
    objective = ToyObjective()
    objective.nonfinite_calls = {2}
    ctx = cpu_context(tmp_path, amp_dtype=torch.float16)  # CPU fp16 autocast, for the test
    summary = train(objective, make_loader(ToyDataset(), 4), ctx, **FAST)
    assert summary["train/nonfinite_steps"] == 1 and math.isfinite(summary["train/epoch_loss"])
    saved = training_checkpoint.load_checkpoint(ctx.checkpoints_dir / "last.ckpt")
    assert saved["scaler"]["scale"] > 0  # the scaler's state travels with the checkpoint
    bf16_saved = training_checkpoint.load_checkpoint(run(tmp_path / "bf16")[1].checkpoints_dir / "last.ckpt")
    assert bf16_saved["scaler"] == {}  # no scaler outside fp16


def test_compiled_forward_trains_like_the_eager_one(tmp_path):
    eager, _, _ = run(tmp_path / "eager", epochs=2)
    compiled, _, _ = run(tmp_path / "compiled", epochs=2, compile="eager")  # dynamo, no codegen
    for name, value in params(eager.trainable_modules()).items():
        torch.testing.assert_close(params(compiled.trainable_modules())[name], value, msg=name)


def test_resuming_a_finished_run_does_nothing_more(tmp_path):
    first, ctx, done = run(tmp_path)
    before = params(first.trainable_modules())
    objective = ToyObjective()
    again = train(objective, make_loader(ToyDataset(n=16), 4), cpu_context(tmp_path),
                  **FAST, resume_from=ctx.checkpoints_dir / "last.ckpt")
    assert again["global_step"] == done["global_step"]
    assert again["train/epoch_loss"] == pytest.approx(done["train/epoch_loss"])
    assert all(torch.equal(v, params(objective.trainable_modules())[k]) for k, v in before.items())


def test_unused_trainable_parameters_are_named_before_ddp_trips_on_them(tmp_path):
    objective = ToyObjective()
    objective.heads["unused"] = torch.nn.Linear(16, 16)
    step = TrainStep(objective, optim.build_optimizer(objective.trainable_modules(), lr=0.1),
                     device=torch.device("cpu"))
    step.check_unused = True  # what a DDP run without find_unused_parameters sets
    with pytest.raises(RuntimeError, match=r"heads.unused.weight.*find_unused_parameters=True"):
        step([next(iter(make_loader(ToyDataset(), 4)))])


def test_adamw_kernel_is_fused_only_for_cuda_parameters_unless_forced():
    trainable = ToyObjective().trainable_modules()
    assert optim.build_optimizer(trainable, lr=0.1).param_groups[0]["fused"] is None  # CPU
    assert optim.build_optimizer(trainable, lr=0.1, fused=True).param_groups[0]["fused"] is True


def _resume_across_kernels(device, saved_flags, resumed_flags):
    """One AdamW step with one kernel, saved; resumed into an optimizer built with another; the
    resumed one must keep its own kernel, the saved moments and step count, and step on."""
    trainable = ToyObjective().trainable_modules().to(device)
    saved = torch.optim.AdamW(trainable.parameters(), lr=0.1, **saved_flags)
    for p in trainable.parameters():
        p.grad = torch.ones_like(p)
    saved.step()
    resumed = torch.optim.AdamW(trainable.parameters(), lr=0.1, **resumed_flags)
    optim.load_optimizer_state(resumed, saved.state_dict())
    for key, value in resumed_flags.items():
        assert all(group[key] is value for group in resumed.param_groups)
    first = next(iter(trainable.parameters()))
    assert torch.equal(resumed.state[first]["exp_avg"], saved.state[first]["exp_avg"])
    assert int(resumed.state[first]["step"]) == 1
    resumed.step()  # the kernel finds its state where it needs it
    assert int(resumed.state[first]["step"]) == 2


def test_a_resumed_optimizer_keeps_this_runs_kernel_but_the_saved_state():
    """torch's load_state_dict would take the saved kernel flags (say, from a CPU run)."""
    _resume_across_kernels("cpu", dict(foreach=True), dict(foreach=False))
    _resume_across_kernels("cpu", dict(foreach=False), dict(fused=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (fused AdamW step counters live there)")
def test_a_foreach_checkpoint_resumes_under_the_fused_cuda_kernel():
    _resume_across_kernels("cuda", dict(foreach=True), dict(fused=True))
    _resume_across_kernels("cuda", dict(fused=True), dict(foreach=True))


def test_a_compile_mode_without_compile_is_refused(tmp_path):
    with pytest.raises(ValueError, match="compile_mode='reduce-overhead' needs train.compile=True"):
        run(tmp_path, compile_mode="reduce-overhead")


def test_compile_modes_that_would_misbehave_are_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot accumulate gradients"):
        run(tmp_path / "a", compile=True, compile_mode="reduce-overhead", accum_steps=2)
    with pytest.raises(ValueError, match="mode of the inductor backend"):
        run(tmp_path / "b", compile="aot_eager", compile_mode="max-autotune")
