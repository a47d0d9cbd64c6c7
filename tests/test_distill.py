"""Distillation: the loss against its formula, the loop's determinism, and DDP equivalence."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import pyquant.io
from pyquant.distill import DistillationLoss, distill, make_loader, seed_everything, train

WORKER = pathlib.Path(__file__).with_name("_ddp_distill_worker.py")


@pytest.fixture(scope="module")
def digits():
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x / 16.0, y, test_size=0.25, stratify=y,
                                          random_state=0)
    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return f(xtr), torch.tensor(ytr), f(xte), torch.tensor(yte)


def mlp(hidden):
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_loss_matches_hinton_formula():
    torch.manual_seed(0)
    s, t = torch.randn(8, 10), torch.randn(8, 10) * 3
    y = torch.randint(0, 10, (8,))
    T, a = 4.0, 0.75
    p_t = F.softmax(t / T, 1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / T, 1))).sum(1).mean()
    want = a * T * T * kl + (1 - a) * F.cross_entropy(s, y)
    got = DistillationLoss(T, a)(s, t, y)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # identical distributions: only the hard-label part remains
    torch.testing.assert_close(DistillationLoss(T, a)(t, t, y),
                               (1 - a) * F.cross_entropy(t, y), rtol=1e-5, atol=1e-6)
    assert DistillationLoss(T, 1.0)(s, t).item() > 0


def test_loss_gradient_flows_only_to_student():
    s = torch.randn(4, 10, requires_grad=True)
    t = torch.randn(4, 10, requires_grad=True)
    DistillationLoss(2.0, 0.5)(s, t, torch.tensor([0, 1, 2, 3])).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


@pytest.mark.parametrize("kwargs, match", [
    (dict(temperature=0), "temperature"), (dict(temperature=float("nan")), "temperature"),
    (dict(alpha=1.5), "alpha"), (dict(alpha=-0.1), "alpha"), (dict(hint_weight=-1), "hint")])
def test_loss_rejects_bad_arguments(kwargs, match):
    args = dict(temperature=2.0, alpha=0.5) | kwargs
    with pytest.raises(ValueError, match=match):
        DistillationLoss(args.pop("temperature"), args.pop("alpha"), **args)


def test_loss_needs_target_when_alpha_below_one():
    with pytest.raises(ValueError, match="target"):
        DistillationLoss(2.0, 0.5)(torch.randn(2, 3), torch.randn(2, 3))
    with pytest.raises(ValueError, match="shape"):
        DistillationLoss(2.0, 1.0)(torch.randn(2, 3), torch.randn(2, 4))


def test_hint_layers_build_projection_and_contribute():
    teacher, student = mlp(64), mlp(16)
    loss = DistillationLoss(2.0, 0.5, feature_layers=[("1", "1")], hint_weight=1.0)
    x = torch.randn(5, 64)
    loss.attach(teacher, student, x)
    assert isinstance(loss.projections["0"], nn.Linear)
    assert loss.projections["0"].weight.shape == (64, 16)
    y = torch.randint(0, 10, (5,))
    s_out, t_out = student(x), teacher(x)
    with_hint = loss(s_out, t_out, y)
    h = loss.hint_loss()
    want = F.mse_loss(loss.projections["0"](torch.relu(student[0](x))),
                      torch.relu(teacher[0](x)))
    torch.testing.assert_close(h, want)
    assert with_hint.item() > DistillationLoss(2.0, 0.5)(s_out, t_out, y).item()
    loss.detach()
    with pytest.raises(ValueError, match="not found"):
        DistillationLoss(2.0, feature_layers=["nope"]).attach(teacher, student, x)


def test_distill_is_deterministic_and_leaves_teacher_untouched(digits):
    xtr, ytr, _, _ = digits
    ds = torch.utils.data.TensorDataset(xtr[:320], ytr[:320])
    seed_everything(0)
    teacher = mlp(64)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    outs = []
    for _ in range(2):
        seed_everything(5)
        student = mlp(16)
        distill(teacher, student, make_loader(ds, 32, seed=3), epochs=1, seed=11, progress=False)
        outs.append(student.state_dict())
    for k in outs[0]:
        assert torch.equal(outs[0][k], outs[1][k]), k
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not teacher.training


def test_distillation_transfers_teacher_knowledge(digits):
    """A student trained only on soft targets (alpha=1, no labels used) learns the task."""
    xtr, ytr, xte, yte = digits
    ds = torch.utils.data.TensorDataset(xtr, ytr)
    seed_everything(0)
    teacher = mlp(128)
    train(teacher, make_loader(ds, 64, seed=0), epochs=8, seed=0, progress=False, lr=3e-3)
    t_acc = accuracy(teacher, xte, yte)
    assert t_acc > 0.9
    seed_everything(1)
    student = mlp(16)
    assert accuracy(student, xte, yte) < 0.3
    distill(teacher, student, make_loader(ds, 64, seed=0), epochs=8, alpha=1.0, temperature=4,
            seed=0, progress=False, lr=1e-2)
    assert accuracy(student, xte, yte) > t_acc - 0.08


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_match_single_process(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    single, multi = tmp_path / "single", tmp_path / "ddp"
    single.mkdir(), multi.mkdir()
    subprocess.run([sys.executable, str(WORKER), str(single)], check=True, env=env, timeout=120)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes=1",
                    "--nproc_per_node=2", "--master_addr=127.0.0.1",
                    f"--master_port={_free_port()}", str(WORKER), str(multi)],
                   check=True, env=env, timeout=120)
    ref = pyquant.io.load(single / "rank0.pq").state_dict()
    r0 = pyquant.io.load(multi / "rank0.pq").state_dict()
    r1 = pyquant.io.load(multi / "rank1.pq").state_dict()
    seed_everything(123)  # the worker's student init
    init = mlp(32).state_dict()
    for k in ref:
        assert torch.equal(r0[k], r1[k]), f"ranks disagree on {k}"
        torch.testing.assert_close(r0[k], ref[k], rtol=1e-4, atol=1e-5, msg=f"{k} vs single")
        assert not torch.allclose(ref[k], init[k]), f"{k} did not train"
