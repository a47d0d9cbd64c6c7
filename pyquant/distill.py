"""Knowledge distillation (Hinton, Vinyals & Dean 2015) and the training loop pyquant uses.

``DistillationLoss`` mixes the KL divergence between the teacher's and the student's softened
softmax (scaled by T^2 so its gradients keep their size as T changes) with the hard-label
cross-entropy, plus an optional hint loss (FitNets, Romero et al. 2015): the MSE between chosen
intermediate activations of student and teacher, through a learned 1x1 projection when their
widths differ.

``distill`` / ``train`` run the same loop. Under ``torch.distributed`` (e.g. ``torchrun
--nproc_per_node=2`` with the gloo backend) the student is wrapped in DistributedDataParallel
and each rank must get its own shard of every global batch: build the loader with
:func:`make_loader`, which uses a ``DistributedSampler`` when a process group is initialised
(a loader you build yourself must do the same). With equal per-rank batch sizes, DDP's gradient
averaging makes the run match a single-process run on the concatenated global batches.
"""

from __future__ import annotations

import math
import random
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DistillationLoss", "distill", "make_loader", "seed_everything", "train"]

FeatureLayers = Union[Mapping[str, str], Sequence[Tuple[str, str]], Sequence[str]]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (the loop's only sources of randomness).

    Args:
        seed: the seed.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _dist_active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def make_loader(dataset: torch.utils.data.Dataset, batch_size: int, *, shuffle: bool = True,
                seed: int = 0, drop_last: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader that shards batches across ranks when torch.distributed is initialised.

    Args:
        dataset: the dataset.
        batch_size: per-rank batch size (the global batch is ``batch_size * world_size``).
        shuffle: shuffle every epoch (``distill``/``train`` call ``sampler.set_epoch``).
        seed: shuffling seed (the same on every rank).
        drop_last: drop the last incomplete batch.

    Returns:
        A ``DataLoader``; with a ``DistributedSampler`` under torch.distributed.

    Raises:
        ValueError: if ``batch_size`` < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if _dist_active():
        sampler = torch.utils.data.DistributedSampler(dataset, shuffle=shuffle, seed=seed,
                                                      drop_last=drop_last)
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                                           drop_last=drop_last,
                                           generator=torch.Generator().manual_seed(seed))
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                                       generator=gen, drop_last=drop_last)


def _resolve(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"feature layer {name!r} not found in {type(model).__name__}") from None


class DistillationLoss(nn.Module):
    """Hinton distillation loss with optional hint (feature) losses.

    ``loss = alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)
    + hint_weight * sum_l MSE(proj_l(f_s_l), f_t_l)``

    Args:
        temperature: softmax temperature T > 0 (2-8 is typical).
        alpha: weight of the soft-target term in [0, 1]; 0 is plain cross-entropy.
        feature_layers: optional hint layers: a mapping ``{student_layer: teacher_layer}``, a
            sequence of ``(student_layer, teacher_layer)`` pairs, or names present in both.
            Call :meth:`attach` before use (``distill`` does).
        hint_weight: weight of the hint term.

    Raises:
        ValueError: for T <= 0, alpha outside [0, 1] or hint_weight < 0.
    """

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9, *,
                 feature_layers: Optional[FeatureLayers] = None, hint_weight: float = 1.0):
        super().__init__()
        if not (isinstance(temperature, (int, float)) and temperature > 0
                and math.isfinite(temperature)):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        if hint_weight < 0:
            raise ValueError(f"hint_weight must be >= 0, got {hint_weight!r}")
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.hint_weight = float(hint_weight)
        if feature_layers is None:
            pairs: List[Tuple[str, str]] = []
        elif isinstance(feature_layers, Mapping):
            pairs = list(feature_layers.items())
        else:
            pairs = [(p, p) if isinstance(p, str) else tuple(p) for p in feature_layers]
        self.pairs = pairs
        self.projections = nn.ModuleDict()
        self._feats: Dict[str, torch.Tensor] = {}
        self._handles: list = []

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, alpha={self.alpha}, "
                f"hint_weight={self.hint_weight}, feature_layers={self.pairs}")

    # -- hints --------------------------------------------------------------------------

    def attach(self, teacher: nn.Module, student: nn.Module,
               example_input: Optional[torch.Tensor] = None) -> "DistillationLoss":
        """Hook the hint layers of ``teacher`` and ``student`` and build the projections.

        Projections (a bias-free ``Linear`` on the last dim for 2-d/3-d features, a 1x1 ``Conv``
        for 4-d ones) are created when the widths differ, which needs one forward pass on
        ``example_input``. Create the optimizer after this call and include
        ``self.parameters()`` in it (``distill`` does).

        Args:
            teacher: the teacher model.
            student: the student model (not DDP-wrapped).
            example_input: one input batch; required when hint layers are set.

        Returns:
            self.

        Raises:
            ValueError: a layer name is missing, or ``example_input`` is needed and missing.
        """
        self.detach()
        if not self.pairs:
            return self
        if example_input is None:
            raise ValueError("example_input is required to attach hint layers")
        for i, (sname, tname) in enumerate(self.pairs):
            self._handles.append(_resolve(student, sname).register_forward_hook(
                self._store(f"s{i}")))
            self._handles.append(_resolve(teacher, tname).register_forward_hook(
                self._store(f"t{i}")))
        with torch.no_grad():
            was = teacher.training, student.training
            teacher.eval(), student.eval()
            teacher(example_input), student(example_input)
            teacher.train(was[0]), student.train(was[1])
        for i, (sname, tname) in enumerate(self.pairs):
            fs, ft = self._feats[f"s{i}"], self._feats[f"t{i}"]
            if fs.dim() != ft.dim() or fs.shape[2:] != ft.shape[2:] and fs.dim() == 4:
                raise ValueError(f"hint layers {sname!r} {tuple(fs.shape)} and {tname!r} "
                                 f"{tuple(ft.shape)} have incompatible shapes")
            key = str(i)
            if fs.dim() == 4 and fs.shape[1] != ft.shape[1]:
                self.projections[key] = nn.Conv2d(fs.shape[1], ft.shape[1], 1, bias=False)
            elif fs.dim() in (2, 3) and fs.shape[-1] != ft.shape[-1]:
                self.projections[key] = nn.Linear(fs.shape[-1], ft.shape[-1], bias=False)
        self._feats.clear()
        return self

    def detach(self) -> None:
        """Remove the forward hooks installed by :meth:`attach`."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self._feats.clear()

    def _store(self, key: str) -> Callable:
        def hook(module, inputs, output):
            self._feats[key] = output
        return hook

    def hint_loss(self) -> torch.Tensor:
        """The weighted hint loss of the last teacher and student forward passes.

        Returns:
            A scalar tensor (0 when no hint layers are set).

        Raises:
            RuntimeError: if hint layers are set but the hooks have not captured outputs
                (``attach`` not called, or no forward pass yet).
        """
        if not self.pairs:
            return torch.zeros(())
        total = 0.0
        for i, _ in enumerate(self.pairs):
            fs, ft = self._feats.get(f"s{i}"), self._feats.get(f"t{i}")
            if fs is None or ft is None:
                raise RuntimeError("hint layers have no captured outputs: call attach() and run "
                                   "teacher and student forward first")
            proj = self.projections[str(i)] if str(i) in self.projections else None
            total = total + F.mse_loss(proj(fs) if proj is not None else fs, ft.detach())
        return self.hint_weight * total

    # -- main term ----------------------------------------------------------------------

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                target: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Compute the loss.

        Args:
            student_logits: [N, C] student outputs.
            teacher_logits: [N, C] teacher outputs (gradients are not taken through them).
            target: [N] class indices; required when ``alpha < 1``.

        Returns:
            The scalar loss (hint term included when hint layers are attached).

        Raises:
            ValueError: shape mismatch, or ``target`` missing with ``alpha < 1``.
        """
        if student_logits.shape != teacher_logits.shape:
            raise ValueError(f"student_logits {tuple(student_logits.shape)} and teacher_logits "
                             f"{tuple(teacher_logits.shape)} must have the same shape")
        T = self.temperature
        loss = student_logits.new_zeros(())
        if self.alpha > 0:
            kd = F.kl_div(F.log_softmax(student_logits / T, dim=-1),
                          F.log_softmax(teacher_logits.detach() / T, dim=-1),
                          reduction="batchmean", log_target=True)
            loss = loss + self.alpha * (T * T) * kd
        if self.alpha < 1:
            if target is None:
                raise ValueError("target is required when alpha < 1")
            loss = loss + (1 - self.alpha) * F.cross_entropy(student_logits, target)
        if self.pairs:
            loss = loss + self.hint_loss()
        return loss


# ----------------------------------------------------------------------------- loop


def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def _is_main_rank() -> bool:
    return not _dist_active() or torch.distributed.get_rank() == 0


def _fit(student: nn.Module, train_loader: Iterable, *, epochs: int,
         loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
         teacher: Optional[nn.Module], extra_params: Sequence[nn.Parameter],
         optimizer: Optional[torch.optim.Optimizer], lr: float, weight_decay: float,
         seed: Optional[int], progress: bool, device: Union[str, torch.device],
         desc: str, on_step: Optional[Callable[[int], None]],
         max_steps: Optional[int]) -> Dict[str, list]:
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be an int >= 0, got {epochs!r}")
    if seed is not None:
        seed_everything(seed)
    device = torch.device(device)
    student.to(device)
    if teacher is not None:
        teacher.to(device).eval()
    model: nn.Module = student
    if _dist_active():
        # gradients are averaged across ranks by DDP; the loader shards the global batch
        model = nn.parallel.DistributedDataParallel(student)
    if optimizer is None:
        optimizer = torch.optim.Adam(list(student.parameters()) + list(extra_params), lr=lr,
                                     weight_decay=weight_decay)
    history: Dict[str, list] = {"loss": []}
    sampler = getattr(train_loader, "sampler", None)
    step = 0
    student.train()
    try:
        total = len(train_loader)
    except TypeError:
        total = None
    for epoch in range(epochs):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        running, count = 0.0, 0
        bar = _progress(train_loader, total, f"{desc} {epoch + 1}/{epochs}",
                        progress and _is_main_rank())
        for x, y in bar:
            x, y = x.to(device), y.to(device)
            if teacher is not None:
                with torch.no_grad():
                    t_out = teacher(x)
            else:
                t_out = None
            out = model(x)
            loss = loss_fn(out, t_out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if extra_params and _dist_active():
                # hint projections live outside the DDP-wrapped student: average them by hand
                world = torch.distributed.get_world_size()
                for p in extra_params:
                    if p.grad is not None:
                        torch.distributed.all_reduce(p.grad)
                        p.grad /= world
            optimizer.step()
            step += 1
            if on_step is not None:
                on_step(step)
            running += float(loss.detach()) * len(y)
            count += len(y)
            if progress and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{running / count:.4f}")
            if max_steps is not None and step >= max_steps:
                break
        history["loss"].append(running / max(count, 1))
        if max_steps is not None and step >= max_steps:
            break
    student.eval()
    return history


def train(model: nn.Module, train_loader: Iterable, *, epochs: int,
          optimizer: Optional[torch.optim.Optimizer] = None, lr: float = 1e-3,
          weight_decay: float = 0.0, seed: Optional[int] = None, progress: bool = True,
          device: Union[str, torch.device] = "cpu", desc: str = "train",
          on_step: Optional[Callable[[int], None]] = None,
          max_steps: Optional[int] = None) -> Dict[str, list]:
    """Train ``model`` with cross-entropy (the fine-tuning loop of the compress pipeline).

    Same loop, determinism and torch.distributed behaviour as :func:`distill`.

    Args:
        model: the classifier to train (its outputs are logits).
        train_loader: yields ``(inputs, class_indices)`` batches.
        epochs: number of passes over ``train_loader``.
        optimizer: optional optimizer; default Adam(lr, weight_decay).
        lr: learning rate of the default optimizer.
        weight_decay: weight decay of the default optimizer.
        seed: if set, seeds every RNG first, so two runs give identical weights.
        progress: show a tqdm progress bar (rank 0 only).
        device: device to train on.
        desc: progress-bar label.
        on_step: optional callback after every optimizer step (gets the step count), e.g. a
            pruning schedule.
        max_steps: optional cap on optimizer steps.

    Returns:
        ``{"loss": [mean loss per epoch]}``.

    Raises:
        ValueError: for ``epochs`` < 0.
    """
    return _fit(model, train_loader, epochs=epochs,
                loss_fn=lambda out, t, y: F.cross_entropy(out, y), teacher=None, extra_params=(),
                optimizer=optimizer, lr=lr, weight_decay=weight_decay, seed=seed,
                progress=progress, device=device, desc=desc, on_step=on_step,
                max_steps=max_steps)


def distill(teacher: nn.Module, student: nn.Module, train_loader: Iterable, *, epochs: int,
            optimizer: Optional[torch.optim.Optimizer] = None, lr: float = 1e-3,
            weight_decay: float = 0.0, temperature: float = 4.0, alpha: float = 0.9,
            loss_fn: Optional[DistillationLoss] = None,
            feature_layers: Optional[FeatureLayers] = None, hint_weight: float = 1.0,
            seed: Optional[int] = None, progress: bool = True,
            device: Union[str, torch.device] = "cpu",
            on_step: Optional[Callable[[int], None]] = None,
            max_steps: Optional[int] = None) -> Dict[str, list]:
    """Train ``student`` to mimic ``teacher`` (and fit the labels), in place.

    The teacher runs in eval mode under ``torch.no_grad``; only the student (and hint
    projections) learn. Launched with ``torchrun`` after ``torch.distributed.init_process_group``
    the student is wrapped in DistributedDataParallel; pass a per-rank loader (see
    :func:`make_loader`).

    Args:
        teacher: the trained model to distill from.
        student: the model to train (modified in place; left in eval mode).
        train_loader: yields ``(inputs, class_indices)`` batches.
        epochs: number of passes over ``train_loader``.
        optimizer: optional optimizer over the student's parameters (and ``loss_fn``'s
            projections if hints are used); default Adam(lr, weight_decay).
        lr: learning rate of the default optimizer.
        weight_decay: weight decay of the default optimizer.
        temperature: softmax temperature (ignored if ``loss_fn`` is given).
        alpha: soft-target weight (ignored if ``loss_fn`` is given).
        loss_fn: a ready ``DistillationLoss``; default built from temperature/alpha/hints.
        feature_layers: hint layers, see :class:`DistillationLoss`.
        hint_weight: weight of the hint loss.
        seed: if set, seeds every RNG first, so two runs give identical weights.
        progress: show a tqdm progress bar (rank 0 only).
        device: device to train on.
        on_step: optional callback after every optimizer step.
        max_steps: optional cap on optimizer steps.

    Returns:
        ``{"loss": [mean loss per epoch]}``.

    Raises:
        ValueError: for invalid temperature/alpha/epochs or unknown hint layers.
    """
    if loss_fn is None:
        loss_fn = DistillationLoss(temperature, alpha, feature_layers=feature_layers,
                                   hint_weight=hint_weight)
    extra: List[nn.Parameter] = []
    if loss_fn.pairs:
        x0, _ = next(iter(train_loader))
        if seed is not None:
            # after iter(): a DataLoader without its own generator draws its base seed from the
            # global RNG, which would make the projections' init depend on the loader type
            seed_everything(seed)
        loss_fn.attach(teacher, student, x0.to(device))
        loss_fn.to(device)
        extra = list(loss_fn.parameters())
    try:
        return _fit(student, train_loader, epochs=epochs, loss_fn=loss_fn, teacher=teacher,
                    extra_params=extra, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                    seed=seed, progress=progress, device=device, desc="distill",
                    on_step=on_step, max_steps=max_steps)
    finally:
        loss_fn.detach()

