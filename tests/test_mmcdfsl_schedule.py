"""train.weight_decay_groups and train.cosine_period against MM-CDFSL's distillation recipe
(c21d686): AdamW with weight decay on every parameter (netscripts/get_optimizer.py:236-238) and
timm's CosineLRScheduler with t_initial = epochs * niter_per_epoch, warmup_t = warmup_epochs *
niter_per_epoch, warmup_prefix=True (get_optimizer.py:240-247). The reference curve is timm's
warmup-then-cosine written out here."""
import math

import pytest
import torch
from torch import nn

from mmdistill.train import optim


def mmcdfsl_lr(t: int, lr: float, min_lr: float, warmup_lr: float, warmup: int, cosine: int) -> float:
    """lr after t scheduler steps: linear warmup from warmup_lr over `warmup` steps, then a
    cosine from lr toward min_lr over `cosine` steps (min_lr after it)."""
    if t < warmup:
        return warmup_lr + t * (lr - warmup_lr) / warmup
    t -= warmup
    if t >= cosine:
        return min_lr
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t / cosine))


def _curve(period: str, epochs=6, steps=5, warmup_epochs=2, lr=2e-3, min_lr=1e-4, warmup_lr=1e-5):
    model = nn.Linear(3, 3)
    optimizer = optim.build_optimizer(model, lr=lr)
    scheduler = optim.build_scheduler(optimizer, epochs * steps, warmup_epochs * steps,
                                      min_lr=min_lr, warmup_lr=warmup_lr, period=period)
    lrs = [optimizer.param_groups[0]["lr"]]
    for step in range(1, epochs * steps + 1):
        scheduler.step_update(step)
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def test_all_epochs_period_is_mmcdfsls_curve_and_stops_before_min_lr():
    epochs, steps, warmup_epochs, lr, min_lr, warmup_lr = 6, 5, 2, 2e-3, 1e-4, 1e-5
    lrs = _curve("all_epochs", epochs, steps, warmup_epochs, lr, min_lr, warmup_lr)
    want = [mmcdfsl_lr(t, lr, min_lr, warmup_lr, warmup_epochs * steps, epochs * steps)
            for t in range(epochs * steps + 1)]
    assert lrs == pytest.approx(want, rel=1e-9)
    # the run ends (epochs - warmup_epochs) / epochs of the way down the cosine, above min_lr
    end = min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * (epochs - warmup_epochs) / epochs))
    assert lrs[-1] == pytest.approx(end) and lrs[-1] > 2 * min_lr


def test_remaining_period_reaches_min_lr_on_the_last_step():
    epochs, steps, warmup_epochs, lr, min_lr, warmup_lr = 6, 5, 2, 2e-3, 1e-4, 1e-5
    lrs = _curve("remaining", epochs, steps, warmup_epochs, lr, min_lr, warmup_lr)
    want = [mmcdfsl_lr(t, lr, min_lr, warmup_lr, warmup_epochs * steps,
                       (epochs - warmup_epochs) * steps) for t in range(epochs * steps + 1)]
    assert lrs == pytest.approx(want, rel=1e-9)
    assert lrs[-1] == pytest.approx(min_lr)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.ones(1, 2, 4))
        self.fc = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)

    def no_weight_decay(self):
        return {"pos_embed"}


@pytest.mark.parametrize("groups", ["all", "timm"])
def test_weight_decay_groups_decide_which_parameters_decay(groups):
    """With zero gradients AdamW's step is only the decoupled decay p <- p * (1 - lr * wd)."""
    torch.manual_seed(0)
    model = _Tiny()
    with torch.no_grad():
        model.norm.bias.fill_(0.5)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    lr, wd = 0.1, 0.5
    optimizer = optim.build_optimizer(model, lr=lr, weight_decay=wd, decay_groups=groups)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        decays = groups == "all" or name == "fc.weight"
        expected = before[name] * (1 - lr * wd) if decays else before[name]
        torch.testing.assert_close(p.detach(), expected, msg=name)


def test_bad_values_are_refused_with_the_choices():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="train.weight_decay_groups='none'.*'timm'.*'all'"):
        optim.build_optimizer(model, lr=0.1, decay_groups="none")
    optimizer = optim.build_optimizer(model, lr=0.1)
    with pytest.raises(ValueError, match="train.cosine_period='epochs'.*'remaining'.*'all_epochs'"):
        optim.build_scheduler(optimizer, 10, 2, period="epochs")


@pytest.mark.parametrize("setting, value", [("weight_decay_groups", "none"),
                                            ("cosine_period", "epochs")])
def test_train_refuses_a_bad_choice_before_anything_runs(tmp_path, setting, value):
    from context_factories import cpu_context
    from toy_objective import ToyDataset, ToyObjective, make_loader

    from mmdistill.train.loop import train

    ctx = cpu_context(tmp_path)
    with pytest.raises(ValueError, match=f"^train.{setting}='{value}': choose"):
        train(ToyObjective(), make_loader(ToyDataset(n=8), 4), ctx, **{setting: value})
    assert not list(ctx.checkpoints_dir.iterdir())
