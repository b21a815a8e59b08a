import math

import pytest
import torch
from torch import nn

from utils.lars import LARS
from utils.schedule import CosineAnnealingWithLinearRampLR, ramp_cosine_lr


def rates(optimizer, scheduler, epochs):
    out = []
    for _ in range(epochs):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_matches_authors_hundred_epoch_schedule(ref):
    base, total = float(ref["schedule_base_lr"]), int(ref["schedule_T_max"])
    sgd = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=base, momentum=0.9)
    scheduler = CosineAnnealingWithLinearRampLR(sgd, total)
    assert rates(sgd, scheduler, total) == pytest.approx(ref["schedule_lrs"].tolist(), rel=1e-12)


def test_closed_form_pieces():
    assert ramp_cosine_lr(0, 1.0, 100) == pytest.approx(0.1)
    # The ramp meets the cosine between epochs 9 and 10: from there on the cosine is lower.
    assert ramp_cosine_lr(9, 1.0, 100) == pytest.approx((1 + math.cos(math.pi * 0.09)) / 2)
    assert ramp_cosine_lr(8, 1.0, 100) == pytest.approx(0.9)
    assert ramp_cosine_lr(50, 1.0, 100) == pytest.approx(0.5)
    assert ramp_cosine_lr(99, 2.0, 100, eta_min=0.5) > 0.5


def test_state_dict_restores_the_schedule_mid_run():
    def fresh():
        sgd = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.5)
        return sgd, CosineAnnealingWithLinearRampLR(sgd, 30)

    sgd, scheduler = fresh()
    full = rates(sgd, scheduler, 30)
    sgd, scheduler = fresh()
    rates(sgd, scheduler, 12)
    state = scheduler.state_dict()
    assert isinstance(state["last_epoch"], int)
    sgd2, scheduler2 = fresh()
    scheduler2.load_state_dict(state)
    for group in sgd2.param_groups:  # what a resume restores from the optimizer's state
        group["lr"] = sgd.param_groups[0]["lr"]
    assert rates(sgd2, scheduler2, 18) == pytest.approx(full[12:])


def test_drives_the_optimizer_inside_lars():
    w = nn.Parameter(torch.ones(2))
    sgd = torch.optim.SGD([w], lr=3.0)
    lars = LARS(sgd)
    scheduler = CosineAnnealingWithLinearRampLR(sgd, 100)
    w.grad = torch.ones(2)
    lars.step()
    scheduler.step()
    assert lars.param_groups[0]["lr"] == pytest.approx(0.6)
