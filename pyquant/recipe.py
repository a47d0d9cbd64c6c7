"""Compression recipes: small dataclasses, readable from YAML or JSON.

Example YAML::

    prune: {amount: 0.9, steps: 4, finetune_epochs: 2, scope: global}
    distill: {enabled: true, temperature: 4.0, alpha: 0.7}
    quantize: {enabled: true, mode: dynamic}
    sparse: {enabled: false}
    lr: 0.001
    seed: 0
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Mapping, Optional, Type, TypeVar

__all__ = ["DistillRecipe", "PruneRecipe", "QuantizeRecipe", "Recipe", "SparseRecipe"]

T = TypeVar("T")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


@dataclasses.dataclass(frozen=True)
class PruneRecipe:
    """Gradual magnitude pruning with fine-tuning.

    Attributes:
        amount: final fraction of prunable weights set to zero, in [0, 1); 0 disables pruning.
        scope: ``"global"`` (one threshold across layers) or ``"layer"`` (each layer alone).
        steps: pruning steps of the cubic schedule (Zhu & Gupta 2017); 1 is one-shot.
        finetune_epochs: fine-tuning epochs after each step (needs a train loader if > 0).
    """

    amount: float = 0.0
    scope: str = "global"
    steps: int = 1
    finetune_epochs: int = 1

    def __post_init__(self):
        _check(0.0 <= self.amount < 1.0, f"prune.amount must be in [0, 1), got {self.amount!r}")
        _check(self.scope in ("global", "layer"),
               f"prune.scope must be 'global' or 'layer', got {self.scope!r}")
        _check(isinstance(self.steps, int) and self.steps >= 1,
               f"prune.steps must be an int >= 1, got {self.steps!r}")
        _check(isinstance(self.finetune_epochs, int) and self.finetune_epochs >= 0,
               f"prune.finetune_epochs must be an int >= 0, got {self.finetune_epochs!r}")


@dataclasses.dataclass(frozen=True)
class DistillRecipe:
    """Distillation from a teacher (the original model unless one is given) while fine-tuning.

    Attributes:
        enabled: use the distillation loss instead of plain cross-entropy.
        temperature: softmax temperature.
        alpha: weight of the soft-target term.
        epochs: extra distillation epochs after pruning (0: only during pruning fine-tunes).
    """

    enabled: bool = False
    temperature: float = 4.0
    alpha: float = 0.7
    epochs: int = 0

    def __post_init__(self):
        _check(self.temperature > 0, f"distill.temperature must be > 0, got {self.temperature!r}")
        _check(0.0 <= self.alpha <= 1.0, f"distill.alpha must be in [0, 1], got {self.alpha!r}")
        _check(isinstance(self.epochs, int) and self.epochs >= 0,
               f"distill.epochs must be an int >= 0, got {self.epochs!r}")


@dataclasses.dataclass(frozen=True)
class QuantizeRecipe:
    """int8 quantization.

    Attributes:
        enabled: quantize Linear/Conv2d layers to int8.
        mode: ``"dynamic"`` (activations quantized per call) or ``"static"`` (calibrated).
        calibration_batches: batches of the train loader used to calibrate static scales.
    """

    enabled: bool = False
    mode: str = "dynamic"
    calibration_batches: int = 8

    def __post_init__(self):
        _check(self.mode in ("dynamic", "static"),
               f"quantize.mode must be 'dynamic' or 'static', got {self.mode!r}")
        _check(isinstance(self.calibration_batches, int) and self.calibration_batches >= 1,
               f"quantize.calibration_batches must be an int >= 1, got "
               f"{self.calibration_batches!r}")


@dataclasses.dataclass(frozen=True)
class SparseRecipe:
    """Swap pruned Linear layers for sparse-kernel layers where that is faster.

    Attributes:
        enabled: call ``pyquant.sparsify_`` after pruning.
        min_sparsity: optional lower bound on a layer's sparsity for the swap.
        rows: the batch (rows of input per call) the model will run at, e.g. 1 for
            token-by-token decoding: ``sparsify_``'s ``rows`` (the packs' layout and the timing).
    """

    enabled: bool = False
    min_sparsity: Optional[float] = None
    rows: int = 32

    def __post_init__(self):
        _check(self.min_sparsity is None or 0.0 <= self.min_sparsity <= 1.0,
               f"sparse.min_sparsity must be in [0, 1], got {self.min_sparsity!r}")
        _check(isinstance(self.rows, int) and not isinstance(self.rows, bool) and self.rows >= 1,
               f"sparse.rows must be an int >= 1, got {self.rows!r}")


_SECTIONS = {"prune": PruneRecipe, "distill": DistillRecipe, "quantize": QuantizeRecipe,
             "sparse": SparseRecipe}


def _from_mapping(cls: Type[T], data: Mapping[str, Any], where: str) -> T:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown key(s) in {where}: {sorted(unknown)}; expected some of "
                         f"{sorted(names)}")
    return cls(**data)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A full compression recipe for :func:`pyquant.compress`.

    Attributes:
        prune: see :class:`PruneRecipe`.
        distill: see :class:`DistillRecipe`.
        quantize: see :class:`QuantizeRecipe`.
        sparse: see :class:`SparseRecipe`.
        lr: learning rate of the fine-tuning / distillation optimizer (Adam).
        seed: seed of the fine-tuning runs (None: not seeded).
        compression: file compression used to measure size on disk (``"zstd"`` or None).
    """

    prune: PruneRecipe = dataclasses.field(default_factory=PruneRecipe)
    distill: DistillRecipe = dataclasses.field(default_factory=DistillRecipe)
    quantize: QuantizeRecipe = dataclasses.field(default_factory=QuantizeRecipe)
    sparse: SparseRecipe = dataclasses.field(default_factory=SparseRecipe)
    lr: float = 1e-3
    seed: Optional[int] = 0
    compression: Optional[str] = "zstd"

    def __post_init__(self):
        _check(self.lr > 0, f"lr must be > 0, got {self.lr!r}")
        _check(self.compression in (None, "zstd"),
               f"compression must be 'zstd' or None, got {self.compression!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Recipe":
        """Build a recipe from a (nested) mapping.

        Args:
            data: ``{"prune": {...}, "distill": {...}, ..., "lr": ..., "seed": ...}``.

        Returns:
            The recipe.

        Raises:
            ValueError: unknown keys or invalid values (the message names the key).
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"recipe must be a mapping, got {type(data).__name__}")
        kwargs: Dict[str, Any] = {}
        top = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - top
        if unknown:
            raise ValueError(f"unknown key(s) in recipe: {sorted(unknown)}; expected some of "
                             f"{sorted(top)}")
        for k, v in data.items():
            kwargs[k] = _from_mapping(_SECTIONS[k], v or {}, k) if k in _SECTIONS else v
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: "os.PathLike[str] | str") -> "Recipe":
        """Read a recipe from a ``.yaml``/``.yml`` or ``.json`` file.

        Args:
            path: the file.

        Returns:
            The recipe.

        Raises:
            ValueError: unknown extension, unparsable file, unknown keys or invalid values.
        """
        path = os.fspath(path)
        with open(path) as f:
            text = f.read()
        ext = os.path.splitext(path)[1].lower()
        try:
            if ext in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)  # safe_load: a recipe file cannot build objects
            elif ext == ".json":
                data = json.loads(text)
            else:
                raise ValueError(f"recipe file must be .yaml, .yml or .json, got {path}")
        except (json.JSONDecodeError, ImportError) as err:
            raise ValueError(f"cannot parse recipe {path}: {err}") from err
        except Exception as err:
            if type(err).__module__.startswith("yaml"):
                raise ValueError(f"cannot parse recipe {path}: {err}") from err
            raise
        return cls.from_dict(data or {})

    def to_dict(self) -> Dict[str, Any]:
        """Return the recipe as a nested dict (what :meth:`from_dict` reads)."""
        return dataclasses.asdict(self)
