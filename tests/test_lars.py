import pytest
import torch
from conftest import as_tensor, assert_close_rel
from torch import nn

from utils.lars import LARS, param_groups_excluding_bn_bias


def run_reference_steps(ref, optimizer_factory):
    params = [nn.Parameter(as_tensor(ref[f"lars_param{i}_init"])) for i in range(3)]
    optimizer = optimizer_factory(params)
    for step in range(3):
        for i, p in enumerate(params):
            p.grad = as_tensor(ref[f"lars_grad{i}_step{step}"])
        optimizer.step()
    return params


def test_three_steps_match_torchlars_reference(ref):
    params = run_reference_steps(
        ref, lambda ps: LARS(torch.optim.SGD(ps, lr=0.3, momentum=0.9, weight_decay=1e-6))
    )
    for i, p in enumerate(params):
        assert_close_rel(p, ref[f"lars_param{i}_after3"])
    # The zero tensor with a zero first gradient takes its step of rate 1 on later steps.
    assert torch.all(params[2] != 0)


def test_local_rate_formula_on_one_step():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))  # norm 5
    g = torch.tensor([0.0, 2.0])  # norm 2
    w.grad = g.clone()
    wd, trust, lr = 0.1, 1e-3, 1.0
    LARS(torch.optim.SGD([w], lr=lr, weight_decay=wd), trust_coef=trust).step()
    eta = trust * 5 / (2 + wd * 5 + 1e-8)
    expected = torch.tensor([3.0, 4.0]) - lr * eta * (g + wd * torch.tensor([3.0, 4.0]))
    torch.testing.assert_close(w.detach(), expected)


def test_weight_decay_is_restored_and_state_round_trips():
    w = nn.Parameter(torch.ones(3))
    sgd = torch.optim.SGD([w], lr=0.1, momentum=0.9, weight_decay=1e-6)
    lars = LARS(sgd)
    w.grad = torch.ones(3)
    lars.step()
    assert sgd.param_groups[0]["weight_decay"] == 1e-6
    assert lars.param_groups is sgd.param_groups
    state = lars.state_dict()
    assert "momentum_buffer" in state["state"][0]
    other = LARS(torch.optim.SGD([nn.Parameter(torch.ones(3))], lr=0.1, momentum=0.9))
    other.load_state_dict(state)
    torch.testing.assert_close(
        other.state_dict()["state"][0]["momentum_buffer"], state["state"][0]["momentum_buffer"]
    )


def test_excluded_groups_take_plain_sgd_steps():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    groups = param_groups_excluding_bn_bias([model], weight_decay=0.5)
    assert [p.ndim for p in groups[0]["params"]] == [2]
    assert sorted(p.ndim for p in groups[1]["params"]) == [1, 1, 1]
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    LARS(torch.optim.SGD(groups, lr=0.2, weight_decay=0.5)).step()
    weight_before, *rest_before = before
    weight, *rest = model.parameters()
    for b, p in zip(rest_before, rest, strict=False):  # no decay, no adaptation: p - lr * g
        torch.testing.assert_close(p.detach(), b - 0.2 * 0.5)
    step = (weight_before - weight.detach()).abs()
    assert torch.all(step < 0.2 * 0.5 * 0.01)  # adapted by a trust ratio far below 1


def test_bad_arguments():
    with pytest.raises(ValueError):
        LARS(torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=0.1), trust_coef=-1)
