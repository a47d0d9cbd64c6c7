"""Worker for tests/test_distill.py: distills a small MLP on digits, once per process.

Run plainly for the single-process reference (global batch B) or under torchrun with 2
processes (per-rank batch B/2, DistributedSampler); writes the student's weights with
pyquant.save to OUT/rank<r>.pq.
"""

import os
import sys

import torch
from sklearn.datasets import load_digits
from torch import nn

import pyquant.io
from pyquant.distill import distill, make_loader, seed_everything, train

GLOBAL_BATCH = 32
N = 256  # a multiple of the global batch: every rank sees equal, unpadded shards


def mlp(hidden):
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def main(out_dir):
    torch.set_num_threads(1)
    x, y = load_digits(return_X_y=True)
    ds = torch.utils.data.TensorDataset(torch.tensor(x[:N] / 16.0, dtype=torch.float32),
                                        torch.tensor(y[:N]))
    # the teacher is trained identically in every process, before any process group exists
    seed_everything(0)
    teacher = mlp(64)
    train(teacher, make_loader(ds, 32, shuffle=True, seed=1), epochs=2, progress=False, seed=0)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        torch.distributed.init_process_group("gloo")
    seed_everything(123)
    student = mlp(32)
    loader = make_loader(ds, GLOBAL_BATCH // world, shuffle=False)
    distill(teacher, student, loader, epochs=2, lr=1e-2, temperature=3.0, alpha=0.7,
            feature_layers={"1": "1"}, hint_weight=0.1, seed=7, progress=False)
    rank = torch.distributed.get_rank() if world > 1 else 0
    pyquant.io.save(student, os.path.join(out_dir, f"rank{rank}.pq"), compression=None)
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
