"""``pyquant demo``: the founding document's example CNN, made real, compressed end to end.

The seed document's network (two 3x3 convolutions, max-pooling, two fully connected layers,
``64 * 7 * 7 -> 100 -> 10``) does not run as written: without padding a 28x28 input leaves a
5x5 map, not 7x7. Here the convolutions are padded (28 -> 28 -> 14 -> 14 -> 7), and the data is
real: scikit-learn's handwritten digits (1,797 8x8 images) upsampled to 28x28, with a stratified
held-out test split (25%).

Stages: fp32 training; gradual global magnitude pruning to 90% with distillation from the fp32
model while fine-tuning; int8 quantization; save + reload + re-evaluate; a smaller student
distilled from the fp32 model vs the same student trained alone (mean over 5 seeds); a sweep of
accuracy against compression ratio.
"""

from __future__ import annotations

import copy
import dataclasses
import io as _bytesio
import json
import os
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from pyquant import io as pqio
from pyquant.compress import compress
from pyquant.distill import distill, make_loader, seed_everything, train
from pyquant.recipe import DistillRecipe, PruneRecipe, QuantizeRecipe, Recipe
from pyquant.report import Report, measure_latency, sweep

__all__ = ["DemoConfig", "DigitsCNN", "evaluate", "load_digits_data", "run_demo"]


class DigitsCNN(nn.Module):
    """The seed document's CNN: conv3x3 -> pool -> conv3x3 -> pool -> fc -> fc (padded convs).

    Args:
        channels: output channels of the two convolutions.
        hidden: width of the first fully connected layer.
        image_size: input height/width (divisible by 4).
        num_classes: outputs.
    """

    def __init__(self, channels: Tuple[int, int] = (32, 64), hidden: int = 100,
                 image_size: int = 28, num_classes: int = 10):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4, got {image_size}")
        c1, c2 = channels
        self.channels, self.hidden = (c1, c2), hidden
        self.image_size, self.num_classes = image_size, num_classes
        self.conv1 = nn.Conv2d(1, c1, 3, 1, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, 1, padding=1)
        self.fc1 = nn.Linear(c2 * (image_size // 4) ** 2, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of [N, 1, H, W] images."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))

    def _pyquant_config(self) -> Dict[str, Any]:
        return {"channels": list(self.channels), "hidden": self.hidden,
                "image_size": self.image_size, "num_classes": self.num_classes}


# children (conv1, fc1, ...) are rebuilt from the file's own module tree, so a DigitsCNN whose
# layers were swapped for int8/sparse ones loads back with those layers
pqio.register_module(DigitsCNN, name="pyquant.demo.DigitsCNN",
                     build=lambda cfg, state: DigitsCNN(tuple(cfg["channels"]), cfg["hidden"],
                                                        cfg["image_size"], cfg["num_classes"]))


def load_digits_data(image_size: int = 28, test_size: float = 0.25, seed: int = 0
                     ) -> Tuple[torch.utils.data.TensorDataset, torch.utils.data.TensorDataset]:
    """scikit-learn's digits, scaled to [0, 1], upsampled, split stratified into train/test.

    Args:
        image_size: output height/width (bilinear upsampling from 8x8).
        test_size: held-out fraction.
        seed: split seed.

    Returns:
        ``(train, test)`` TensorDatasets of ``([N, 1, S, S] float32, [N] int64)``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    idx_tr, idx_te = train_test_split(range(len(y)), test_size=test_size, stratify=y,
                                      random_state=seed)
    y = torch.tensor(y, dtype=torch.int64)
    return (torch.utils.data.TensorDataset(x[idx_tr], y[idx_tr]),
            torch.utils.data.TensorDataset(x[idx_te], y[idx_te]))


class ShiftAugment(torch.utils.data.Dataset):
    """Random translations by up to ``pad`` pixels (zero fill), drawn from torch's global RNG
    (seeded by ``seed_everything``). Used for every training run alike: the teacher, the
    students with and without distillation, the fine-tunes.

    Args:
        dataset: a TensorDataset of ``([N, C, H, W], [N])``.
        pad: maximum shift in pixels.
    """

    def __init__(self, dataset: torch.utils.data.TensorDataset, pad: int = 2):
        self.x, self.y = dataset.tensors
        self.pad = pad

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        if self.pad == 0:
            return self.x[i], self.y[i]
        h, w = self.x.shape[-2:]
        x = F.pad(self.x[i], (self.pad,) * 4)
        dx, dy = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
        return x[:, dy:dy + h, dx:dx + w], self.y[i]


def evaluate(model: nn.Module, dataset: torch.utils.data.TensorDataset,
             batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on ``dataset``, in [0, 1]."""
    model.eval()
    x, y = dataset.tensors
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(y), batch_size):
            correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / len(y)


@dataclasses.dataclass
class DemoConfig:
    """Knobs of the demo (defaults: a few minutes on 2 cores).

    Attributes:
        out_dir: where the report, plot, CSV and model files go.
        image_size: digits upsampled to this size.
        epochs: fp32 training epochs of the teacher.
        prune_amount: final global sparsity.
        prune_steps: cubic-schedule steps.
        finetune_epochs: fine-tuning (distillation) epochs after each pruning step.
        student_channels, student_hidden: the smaller student CNN.
        student_epochs: epochs for each student run.
        seeds: student seeds (distilled vs plain, mean over these).
        temperature, alpha: distillation settings.
        sweep_sparsities: sweep grid; empty to skip the sweep.
        sweep_finetune_epochs: fine-tuning epochs per sweep point.
        batch_size: training batch size.
        lr: Adam learning rate (teacher; half of it for fine-tuning).
        student_lr: Adam learning rate of the students.
        augment_shift: random translation (pixels) of training images; 0 disables.
        latency_batch: batch size of the latency measurement.
        repeats: timed runs per model for latency.
        train_subset: use only this many training images (None: all); for quick runs.
        progress: progress bars.
    """

    out_dir: str = "pyquant-demo"
    image_size: int = 16
    epochs: int = 20
    prune_amount: float = 0.9
    prune_steps: int = 4
    finetune_epochs: int = 3
    student_channels: Tuple[int, int] = (16, 32)
    student_hidden: int = 64
    student_epochs: int = 15
    # 5, not 3: the plain student's accuracy spreads over several points between seeds (94-99%
    # on the AMX machine), so 3 seeds decide little. There the distilled and plain means tied
    # (97.96% each); a (12, 24)/48 student gained 2.0 points in one run and lost 0.3 in the
    # next: the gain is within the seed noise on this data (README, "End-to-end").
    seeds: Tuple[int, ...] = (0, 1, 2, 3, 4)
    temperature: float = 2.0
    alpha: float = 0.5
    sweep_sparsities: Tuple[float, ...] = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
    sweep_finetune_epochs: int = 1
    batch_size: int = 32
    lr: float = 1e-3
    student_lr: float = 2e-3
    augment_shift: int = 2
    latency_batch: int = 1
    repeats: int = 50
    train_subset: Optional[int] = None
    progress: bool = True

    @classmethod
    def quick(cls, out_dir: str) -> "DemoConfig":
        """A tiny configuration for smoke tests (seconds, not minutes; numbers meaningless)."""
        return cls(out_dir=out_dir, image_size=16, epochs=1, prune_steps=2, finetune_epochs=1,
                   student_epochs=1, seeds=(0, 1), sweep_sparsities=(0.5, 0.9),
                   sweep_finetune_epochs=0, train_subset=256, repeats=3, progress=False)


def _log(msg: str) -> None:
    print(msg, flush=True)


def _torch_save_bytes(model: nn.Module) -> int:
    buf = _bytesio.BytesIO()
    torch.save(model.state_dict(), buf)  # writing only, for the size comparison
    return buf.tell()


def run_demo(cfg: DemoConfig) -> Dict[str, Any]:
    """Run the demo, print the report table, write the artefacts to ``cfg.out_dir``.

    Args:
        cfg: the configuration.

    Returns:
        A dict: ``report`` (rows), ``students`` (per-seed
        accuracies), ``checks`` (the issue's bars, True/False/None when not measurable), and
        ``files``.
    """
    t_start = time.time()
    os.makedirs(cfg.out_dir, exist_ok=True)
    train_ds, test_ds = load_digits_data(cfg.image_size)
    if cfg.train_subset is not None:
        train_ds = torch.utils.data.TensorDataset(*(t[:cfg.train_subset]
                                                    for t in train_ds.tensors))
    _log(f"data: sklearn digits upsampled to {cfg.image_size}x{cfg.image_size}: "
         f"{len(train_ds)} train / {len(test_ds)} test images")
    train_aug = ShiftAugment(train_ds, cfg.augment_shift)
    loader = make_loader(train_aug, cfg.batch_size, seed=0)
    eval_fn = lambda m: evaluate(m, test_ds)  # noqa: E731
    models: Dict[str, nn.Module] = {}

    # 1. fp32 teacher
    seed_everything(0)
    fp32 = DigitsCNN(image_size=cfg.image_size)
    train(fp32, loader, epochs=cfg.epochs, lr=cfg.lr, seed=0, progress=cfg.progress,
          desc="fp32 train")
    models["fp32"] = fp32
    fp32_acc = eval_fn(fp32)
    _log(f"fp32: test accuracy {fp32_acc:.2%}")

    # 2-3. prune (distilling from fp32 while fine-tuning), then int8
    model = copy.deepcopy(fp32)
    recipe = Recipe(prune=PruneRecipe(cfg.prune_amount, "global", cfg.prune_steps,
                                      cfg.finetune_epochs),
                    distill=DistillRecipe(True, cfg.temperature, cfg.alpha), lr=cfg.lr / 2,
                    seed=0)
    model, _ = compress(model, recipe, train_loader=loader, teacher=fp32, progress=cfg.progress)
    models[f"pruned {cfg.prune_amount:.0%}"] = copy.deepcopy(model)
    compress(model, Recipe(quantize=QuantizeRecipe(True, "dynamic")), progress=False)
    models[f"pruned {cfg.prune_amount:.0%} + int8"] = model

    # 4. the final compressed model: saved, reloaded, re-evaluated
    final_name = list(models)[-1]
    final_path = os.path.join(cfg.out_dir, "model_compressed.pq")
    pqio.save(models[final_name], final_path, compression="zstd",
              metadata={"stage": final_name, "test_accuracy": eval_fn(models[final_name])})
    pqio.save(fp32, os.path.join(cfg.out_dir, "model_fp32.pq"), compression=None)
    models[f"{final_name} (reloaded)"] = pqio.load(final_path)

    # 5. distillation into a smaller student, against the same student trained alone
    students: Dict[str, List[float]] = {"plain": [], "distilled": []}
    student_models: Dict[str, nn.Module] = {}
    for seed in cfg.seeds:
        for kind in ("plain", "distilled"):
            seed_everything(seed)
            st = DigitsCNN(cfg.student_channels, cfg.student_hidden, cfg.image_size)
            ld = make_loader(train_aug, cfg.batch_size, seed=seed)
            if kind == "plain":
                train(st, ld, epochs=cfg.student_epochs, lr=cfg.student_lr, seed=seed,
                      progress=cfg.progress, desc=f"student seed {seed}")
            else:
                distill(fp32, st, ld, epochs=cfg.student_epochs, lr=cfg.student_lr, seed=seed,
                        temperature=cfg.temperature, alpha=cfg.alpha, progress=cfg.progress)
            students[kind].append(eval_fn(st))
            student_models.setdefault(kind, st)
    mean_plain = statistics.mean(students["plain"])
    mean_kd = statistics.mean(students["distilled"])
    pqio.save(student_models["distilled"], os.path.join(cfg.out_dir, "student_distilled.pq"))

    # report: every stage, latency measured interleaved in one run
    all_models = dict(models)
    all_models["student (plain, seed %d)" % cfg.seeds[0]] = student_models["plain"]
    all_models["student (distilled, seed %d)" % cfg.seeds[0]] = student_models["distilled"]
    example = test_ds.tensors[0][:cfg.latency_batch]
    lat = measure_latency(list(all_models.values()), example, repeats=cfg.repeats)
    rep = Report()
    for (name, m), t in zip(all_models.items(), lat):
        rep.add(name, m, eval_fn=eval_fn, latency_ms=t * 1e3,
                compression=None if name == "fp32" else "zstd")
    rep["fp32"]["torch_save_bytes"] = _torch_save_bytes(fp32)

    # 6. sweep: accuracy vs compression ratio
    sweep_rows = None
    if cfg.sweep_sparsities:
        def compress_fn(m: nn.Module, sparsity: float, int8: bool) -> nn.Module:
            r = Recipe(prune=PruneRecipe(sparsity, "global", 1, cfg.sweep_finetune_epochs),
                       quantize=QuantizeRecipe(int8), lr=cfg.lr / 2, seed=0)
            return compress(m, r, train_loader=loader, progress=False)[0]
        sweep_rows = sweep(fp32, cfg.sweep_sparsities, compress_fn, eval_fn=eval_fn,
                           out_dir=cfg.out_dir, int8=(False, True), progress=cfg.progress,
                           title="DigitsCNN on sklearn digits")

    checks = _checks(rep, cfg, fp32_acc, mean_plain, mean_kd)
    _log("")
    _log(rep.table())
    _log("")
    _log(f"fp32 weights as torch.save(state_dict): {rep['fp32']['torch_save_bytes']:,} bytes; "
         f"as a pyquant file: {rep['fp32']['bytes']:,} bytes")
    _log(f"student {cfg.student_channels}/{cfg.student_hidden} over seeds {list(cfg.seeds)}: "
         f"plain {_pct(students['plain'])} mean {mean_plain:.2%}; distilled "
         f"{_pct(students['distilled'])} mean {mean_kd:.2%}; teacher {fp32_acc:.2%}")
    for k, v in checks.items():
        _log(f"check {k}: {'-' if v is None else ('PASS' if v else 'FAIL')}")
    files = {"report": os.path.join(cfg.out_dir, "report.json"),
             "table": os.path.join(cfg.out_dir, "report.txt"),
             "model": final_path}
    if sweep_rows is not None:
        files["sweep_csv"] = os.path.join(cfg.out_dir, "sweep.csv")
        files["sweep_png"] = os.path.join(cfg.out_dir, "sweep.png")
    result = {"report": rep.to_dict(), "students": students,
              "checks": checks, "sweep": sweep_rows, "files": files,
              "seconds": time.time() - t_start}
    with open(files["report"], "w") as f:
        json.dump(result, f, indent=2)
    with open(files["table"], "w") as f:
        f.write(rep.table() + "\n")
    _log(f"wrote {', '.join(files.values())} in {result['seconds']:.0f} s")
    return result


def _pct(xs: List[float]) -> str:
    return "[" + ", ".join(f"{x:.2%}" for x in xs) + "]"


def _checks(rep: Report, cfg: DemoConfig, fp32_acc: float, plain: float,
            kd: float) -> Dict[str, Optional[bool]]:
    name = f"pruned {cfg.prune_amount:.0%} + int8"
    row = next((r for r in rep.rows if r["name"] == name), None)
    return {
        "pruned+int8 >= 10x smaller than the fp32 file":
            None if row is None else row["ratio"] >= 10,
        "pruned+int8 accuracy within 1 point of fp32":
            None if row is None else row["accuracy"] >= fp32_acc - 0.01,
        "reloaded model evaluates the same": _reload_matches(rep),
        "distilled student beats plain student (mean over seeds)": kd > plain,
        "distilled student within 2 points of the teacher": kd >= fp32_acc - 0.02,
    }


def _reload_matches(rep: Report) -> bool:
    i = next((i for i, r in enumerate(rep.rows) if r["name"].endswith("(reloaded)")), None)
    return i is not None and rep.rows[i]["accuracy"] == rep.rows[i - 1]["accuracy"]
