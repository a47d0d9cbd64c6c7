"""Model-level API: config dataclasses and ``quantize_`` (swap modules in place).

torchao's pattern: a registry maps each config type to the function that turns one module into
its quantized replacement; ``quantize_`` walks the model, asks ``filter_fn`` which modules to
replace, and swaps them in place.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterable, Optional

import torch
from torch import nn

from pyquant import ops
from pyquant.nn import QuantConv2d, QuantLinear

__all__ = ["Int8DynamicConfig", "Int8StaticConfig", "quantize_", "register_quantize_handler"]


@dataclasses.dataclass(frozen=True)
class Int8DynamicConfig:
    """int8 per-channel symmetric weights; uint8 activations quantized at run time.

    Attributes:
        act: ``"auto"`` (default: per row, on 8 bits where the CPU has VNNI and on 7 bits
            elsewhere, see ``pyquant.nn.quant_linear.resolve_act``), ``"per_row"`` (one scale
            per token / output pixel, 8 bits), ``"per_row7"`` (the same on 7 bits: faster on
            AVX2-only CPUs) or ``"per_tensor"``.
        weight_method: ``ops.choose_qparams`` method for the weight ranges
            (``"minmax"``, ``"percentile"``, ``"mse"``).
        include_conv: also replace ``nn.Conv2d`` (with the default filter).
    """

    act: str = "auto"
    weight_method: str = "minmax"
    include_conv: bool = True
    is_static = False  # class attribute, not a field


@dataclasses.dataclass(frozen=True)
class Int8StaticConfig:
    """int8 per-channel weights; uint8 activations with one scale per layer, calibrated.

    Attributes:
        calibration_loader: iterable of model inputs (a tensor, a tuple of positional args or
            a dict of keyword args per item), run through the float model once.
        method: ``ops.choose_qparams`` method for the activation ranges.
        num_batches: stop calibration after this many items (None: all).
        max_samples: activation values kept per layer for "percentile"/"mse" (subsampled).
        weight_method, include_conv: as in Int8DynamicConfig.
    """

    calibration_loader: Any = dataclasses.field(default=None, compare=False, hash=False)
    method: str = "minmax"
    num_batches: Optional[int] = None
    max_samples: int = 1 << 20
    weight_method: str = "minmax"
    include_conv: bool = True
    is_static = True


_HANDLERS: Dict[type, Callable] = {}


def register_quantize_handler(config_type: type):
    """Decorator: ``fn(model, targets: dict[name, module], config) -> dict[name, new module]``
    becomes the way ``quantize_`` applies configs of ``config_type``."""
    def deco(fn):
        _HANDLERS[config_type] = fn
        return fn
    return deco


def _swap_one(module: nn.Module, config, **kw) -> nn.Module:
    if isinstance(module, nn.Linear):
        return QuantLinear.from_float(module, config, **kw)
    return QuantConv2d.from_float(module, config, **kw)


@register_quantize_handler(Int8DynamicConfig)
def _dynamic(model: nn.Module, targets: Dict[str, nn.Module], config) -> Dict[str, nn.Module]:
    return {name: _swap_one(m, config) for name, m in targets.items()}


@register_quantize_handler(Int8StaticConfig)
def _static(model: nn.Module, targets: Dict[str, nn.Module], config) -> Dict[str, nn.Module]:
    if config.calibration_loader is None:
        raise ValueError("Int8StaticConfig needs a calibration_loader")
    stats: Dict[str, list] = {name: [] for name in targets}
    kept: Dict[str, int] = {name: 0 for name in targets}
    gen = torch.Generator().manual_seed(0)

    def hook_for(name):
        def hook(mod, args):
            x = args[0].detach().to(torch.float32).reshape(-1)
            if config.method == "minmax":
                stats[name].append(torch.stack([x.min(), x.max()]))
                return
            room = config.max_samples - kept[name]
            if room <= 0:
                return
            if x.numel() > room:  # a uniform subsample keeps the distribution's shape
                x = x[torch.randperm(x.numel(), generator=gen)[:room]]
            stats[name].append(x.clone())
            kept[name] += x.numel()
        return hook

    handles = [m.register_forward_pre_hook(hook_for(n)) for n, m in targets.items()]
    try:
        with torch.no_grad():
            for i, batch in enumerate(config.calibration_loader):
                if config.num_batches is not None and i >= config.num_batches:
                    break
                if isinstance(batch, dict):
                    model(**batch)
                elif isinstance(batch, (tuple, list)):
                    model(*batch)
                else:
                    model(batch)
    finally:
        for h in handles:
            h.remove()
    out = {}
    for name, m in targets.items():
        if not stats[name]:
            raise ValueError(f"calibration never reached module {name!r}")
        data = torch.cat([s.reshape(-1) for s in stats[name]])
        scale, zp = ops.choose_qparams(data.contiguous(), dtype=torch.uint8, symmetric=False,
                                       method=config.method)
        out[name] = _swap_one(m, config, input_scale=float(scale), input_zero_point=int(zp))
    return out


def _default_filter(config) -> Callable[[nn.Module, str], bool]:
    include_conv = getattr(config, "include_conv", True)

    def fn(module: nn.Module, name: str) -> bool:
        if isinstance(module, nn.Linear):
            return True
        return (include_conv and type(module) is nn.Conv2d and module.padding_mode == "zeros"
                and not isinstance(module.padding, str))
    return fn


def quantize_(model: nn.Module, config=None, *,
              filter_fn: Optional[Callable[[nn.Module, str], bool]] = None) -> nn.Module:
    """Replace the model's layers by int8 ones, in place.

    Args:
        model: any ``nn.Module`` (e.g. a Hugging Face encoder); modified in place.
        config: ``Int8DynamicConfig()`` (default: dynamic per-row activations, per-channel
            weights) or ``Int8StaticConfig(calibration_loader=...)``, or any config type
            registered with :func:`register_quantize_handler`.
        filter_fn: ``fn(module, fully_qualified_name) -> bool`` choosing the modules to
            replace; default: every ``nn.Linear`` and (``include_conv``) every ``nn.Conv2d``
            with zero padding.

    Returns:
        The model (the replacement itself when ``model`` is a single matching layer).

    Raises:
        TypeError: unknown config type. ValueError: from the handler (e.g. no loader).
    """
    if config is None:
        config = Int8DynamicConfig()
    handler = _HANDLERS.get(type(config))
    if handler is None:
        raise TypeError(f"no quantize handler registered for {type(config).__name__}")
    fn = filter_fn or _default_filter(config)
    targets = {name: m for name, m in model.named_modules()
               if not isinstance(m, (QuantLinear, QuantConv2d)) and fn(m, name)}
    # A target nested inside another target would be swapped twice: keep the outermost.
    targets = {n: m for n, m in targets.items()
               if not any(n.startswith(o + ".") for o in targets if o != n and o != "")}
    replacements = handler(model, targets, config)
    for name, new in replacements.items():
        if name == "":
            return new
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
    return model
