"""Accuracy cost of 1 x 4, 16 x 1 and 16 x 4 block pruning against unstructured pruning at the same
sparsity.

sklearn digits, MLP 64-256-256-10, 5 seeds: train 30 epochs, prune the two hidden layers to 90%
(magnitude per layer, or 1 x 4 groups / 16 x 1 or 16 x 4 tiles by L1 with prune.block_prune_), fine-tune
10 epochs with the masks attached, evaluate on the held-out 30%. Run: python bench/block_pruning_accuracy.py
"""
import copy, torch, numpy as np
from torch import nn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from pyquant import prune as pp
torch.set_num_threads(1)
X, y = load_digits(return_X_y=True)
X = (X / 16.0).astype(np.float32)
Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
Xtr, Xte, ytr, yte = map(torch.tensor, (Xtr, Xte, ytr, yte))
def train(model, epochs, lr=1e-3, seed=0):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        perm = torch.randperm(len(Xtr), generator=g)
        for i in range(0, len(Xtr), 64):
            idx = perm[i:i+64]
            opt.zero_grad(); nn.functional.cross_entropy(model(Xtr[idx]), ytr[idx]).backward(); opt.step()
    return model
def acc(model):
    with torch.no_grad(): return float((model(Xte).argmax(1) == yte).float().mean()) * 100
res = {"dense": [], "unstructured": [], "1x4": [], "16x1": [], "16x4": []}
for seed in range(5):
    torch.manual_seed(seed)
    base = train(nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)), 30, seed=seed)
    res["dense"].append(acc(base))
    filt = lambda m, n: n in ("0", "2")  # the two hidden layers; the 256 -> 10 head stays dense
    u = copy.deepcopy(base); pp.magnitude_masks_(u, 0.9, scope="layer", filter_fn=filt); train(u, 10, seed=seed); pp.make_permanent(u)
    b = copy.deepcopy(base); pp.block_prune_(b, 0.9, masks=True, filter_fn=filt); train(b, 10, seed=seed); pp.make_permanent(b)
    r = copy.deepcopy(base); pp.block_prune_(r, 0.9, block=(16, 1), masks=True, filter_fn=filt); train(r, 10, seed=seed); pp.make_permanent(r)
    t = copy.deepcopy(base); pp.block_prune_(t, 0.9, block=(16, 4), masks=True, filter_fn=filt); train(t, 10, seed=seed); pp.make_permanent(t)
    for name, mm in (("unstructured", u), ("1x4", b), ("16x1", r), ("16x4", t)):
        assert abs(float((mm[2].weight == 0).float().mean()) - 0.9) < 0.01
        res[name].append(acc(mm))
for k, v in res.items():
    print(f"{k:13s} mean {np.mean(v):.2f}%  min {min(v):.2f}  max {max(v):.2f}  ({', '.join(f'{a:.2f}' for a in v)})")
