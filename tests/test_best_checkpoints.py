"""train.keep_best_k: copies of the epoch checkpoint named by a validation metric, the best k
kept (never last.ckpt), across a resume."""
import pytest
import torch
from toy_objective import ToyDataset, ToyObjective, make_loader

from context_factories import cpu_context
from mmdistill.train import training_checkpoint
from mmdistill.train.loop import train

FAST = dict(warmup_epochs=0, lr=0.5, scale_lr=False, log_every=1, save_ckpt_freq=1)
METRIC = "val/fewshot/5way_5shot/acc"
SCORES = [40.0, 70.0, 55.0, 80.0, 60.0, 75.0]  # validation accuracy after epoch 0, 1, ...


def fake_validation(every=1):
    def hook(epoch, global_step):
        return {METRIC: SCORES[epoch], "val/other": 1.0} if (epoch + 1) % every == 0 else None
    return hook


def named(folder):
    return sorted(p.name for p in folder.iterdir() if "val_fewshot" in p.name)


def test_the_best_k_by_the_validation_metric_are_kept_and_resume_continues(tmp_path):
    ctx = cpu_context(tmp_path)
    loader = make_loader(ToyDataset(n=8), 4)
    train(ToyObjective(), loader, ctx, epochs=3, keep_best_k=2, best_metric=METRIC,
          epoch_end=fake_validation(), **FAST)
    assert named(ctx.checkpoints_dir) == ["epoch=01-val_fewshot_5way_5shot_acc=70.0000.ckpt",
                                          "epoch=02-val_fewshot_5way_5shot_acc=55.0000.ckpt"]
    best = training_checkpoint.load_checkpoint(
        ctx.checkpoints_dir / "epoch=01-val_fewshot_5way_5shot_acc=70.0000.ckpt")
    assert best["epoch"] == 1  # the weights of the epoch the metric was measured on
    # Resumed to 6 epochs, the files on disk take part in the ranking.
    train(ToyObjective(), loader, ctx, epochs=6, keep_best_k=2, best_metric=METRIC,
          epoch_end=fake_validation(), resume_from=ctx.checkpoints_dir / "last.ckpt", **FAST)
    assert named(ctx.checkpoints_dir) == ["epoch=03-val_fewshot_5way_5shot_acc=80.0000.ckpt",
                                          "epoch=05-val_fewshot_5way_5shot_acc=75.0000.ckpt"]
    last = training_checkpoint.load_checkpoint(ctx.checkpoints_dir / "last.ckpt")
    assert last["epoch"] == 5
    assert len(list(ctx.checkpoints_dir.glob("epoch=*-train_loss=*.ckpt"))) == 6  # untouched


def test_min_mode_and_validation_every_other_epoch(tmp_path):
    ctx = cpu_context(tmp_path)
    train(ToyObjective(), make_loader(ToyDataset(n=8), 4), ctx, epochs=6, keep_best_k=1,
          best_metric=METRIC, best_mode="min", epoch_end=fake_validation(every=2), **FAST)
    # validated after epochs 1, 3, 5 (70, 80, 75): the lowest is kept
    assert named(ctx.checkpoints_dir) == ["epoch=01-val_fewshot_5way_5shot_acc=70.0000.ckpt"]


def test_best_k_settings_are_checked_by_name(tmp_path):
    loader = make_loader(ToyDataset(n=8), 4)
    with pytest.raises(ValueError, match="validation.eval_every"):
        train(ToyObjective(), loader, cpu_context(tmp_path / "a"), epochs=1, keep_best_k=2, **FAST)
    with pytest.raises(ValueError, match="train.best_mode"):
        train(ToyObjective(), loader, cpu_context(tmp_path / "b"), epochs=1, keep_best_k=2,
              best_mode="highest", epoch_end=fake_validation(), **FAST)
    with pytest.raises(ValueError, match="train.best_metric='val/acc' is not among"):
        train(ToyObjective(), loader, cpu_context(tmp_path / "c"), epochs=1, keep_best_k=2,
              best_metric="val/acc", epoch_end=fake_validation(), **FAST)
    with pytest.raises(Exception, match="train.keep_best_k"):
        train(ToyObjective(), loader, cpu_context(tmp_path / "d"), epochs=1, keep_best_k=0,
              epoch_end=fake_validation(), **FAST)


def test_a_non_finite_metric_is_never_kept(tmp_path):
    folder = tmp_path
    torch.save({"format": training_checkpoint.FORMAT, "version": training_checkpoint.VERSION,
                "epoch": 0}, folder / "last.ckpt")
    training_checkpoint.save_best(folder, 0, METRIC, float("nan"), 3)
    assert named(folder) == []
    training_checkpoint.save_best(folder, 0, METRIC, 12.5, 3)
    assert named(folder) == ["epoch=00-val_fewshot_5way_5shot_acc=12.5000.ckpt"]
