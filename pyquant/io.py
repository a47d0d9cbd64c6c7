"""Compact model files: safetensors tensors plus a JSON manifest, never pickle.

File layout (all integers little-endian)::

    offset 0   8 bytes   magic b"PYQUANT\\x00"
    offset 8   u32       format version (FORMAT_VERSION)
    offset 12  u64       manifest length in bytes (L)
    offset 20  32 bytes  sha256 of the manifest bytes
    offset 52  L bytes   manifest: UTF-8 JSON (see below)
    offset 52+L          payload: a safetensors blob, zstd-compressed if manifest["compression"]
                         is "zstd"

The manifest holds the payload's size and sha256 (so a flipped or missing byte anywhere in the
file is detected before anything is parsed), the compression, and the module tree: for every
module its registered type name, its constructor config and its children. Loading rebuilds the
tree from a registry of known module types (``register_module``), then fills it with the stored
tensors; nothing in a file can make the loader import or run arbitrary code. Tensors keep their
dtype: int8 weights stay int8, packed sparse indices/values stay whatever the layer stores.

Why a wrapper instead of safetensors' own metadata: the payload may be zstd-compressed (a
pruned int8 model compresses several-fold more, losslessly), and the checksum must cover the
tensor bytes, which a plain safetensors header cannot checksum about itself. With
``compression=None`` the payload is a standard safetensors file, byte for byte
(``pyquant info`` shows where it starts).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import struct
import tempfile
from typing import Any, Callable, Dict, Mapping, Optional

import torch
from torch import nn

__all__ = ["FORMAT_VERSION", "ModelFileError", "inspect", "load", "register_module",
           "registered_types", "save"]

MAGIC = b"PYQUANT\x00"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIQ32s")
_COMPRESSIONS = (None, "none", "zstd")


class ModelFileError(ValueError):
    """A model file is corrupt, truncated, of a newer format, or cannot be rebuilt."""


# ----------------------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True)
class ModuleCodec:
    """How one module type is written to and rebuilt from a manifest.

    Attributes:
        name: the stable type name stored in files (e.g. ``"torch.nn.Linear"``).
        cls: the module class (exact type match on save).
        get_config: module -> JSON-serialisable dict of constructor arguments.
        build: (config, state) -> a module with correctly shaped tensors; ``state`` holds this
            module's own tensors (keys without prefix, children excluded), so layers whose
            buffer shapes depend on data (packed sparse weights) can size them. Tensors are
            loaded into the result afterwards with ``load_state_dict(assign=True)``.
    """

    name: str
    cls: type
    get_config: Callable[[nn.Module], Dict[str, Any]]
    build: Callable[[Dict[str, Any], Dict[str, torch.Tensor]], nn.Module]


_BY_NAME: Dict[str, ModuleCodec] = {}
_BY_CLASS: Dict[type, ModuleCodec] = {}


def register_module(cls: type, *, name: Optional[str] = None,
                    get_config: Optional[Callable[[nn.Module], Dict[str, Any]]] = None,
                    build: Optional[Callable[[Dict[str, Any], Dict[str, torch.Tensor]],
                                             nn.Module]] = None) -> type:
    """Register a module type so that ``save`` records it and ``load`` rebuilds it.

    Integration point for ``pyquant.nn`` layers (QuantLinear, QuantConv2d, SparseLinear, ...):
    each registers itself once at import, e.g.
    ``register_module(QuantLinear, get_config=lambda m: {...}, build=lambda cfg, st: ...)``.

    Args:
        cls: the ``nn.Module`` subclass.
        name: type name stored in files; defaults to ``f"{cls.__module__}.{cls.__qualname__}"``.
        get_config: returns the constructor config of a module. Defaults to
            ``module._pyquant_config()`` if the class defines it, else ``{}``.
        build: rebuilds an empty module from (config, own state). Defaults to
            ``cls._pyquant_build(config, state)`` if defined, else ``cls(**config)``.

    Returns:
        ``cls`` (so it can be used as a decorator).

    Raises:
        TypeError: if ``cls`` is not an ``nn.Module`` subclass.
        ValueError: if ``name`` is already registered to another class.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"cls must be an nn.Module subclass, got {cls!r}")
    name = name or f"{cls.__module__}.{cls.__qualname__}"
    old = _BY_NAME.get(name)
    if old is not None and old.cls is not cls:
        raise ValueError(f"module type name {name!r} is already registered to {old.cls!r}")
    if get_config is None:
        get_config = (lambda m: m._pyquant_config()) if hasattr(cls, "_pyquant_config") \
            else (lambda m: {})
    if build is None:
        build = cls._pyquant_build if hasattr(cls, "_pyquant_build") \
            else (lambda cfg, state: cls(**cfg))
    codec = ModuleCodec(name, cls, get_config, build)
    _BY_NAME[name] = codec
    _BY_CLASS[cls] = codec
    return cls


def registered_types() -> Dict[str, type]:
    """Return ``{type name: class}`` of every module type ``load`` can rebuild."""
    return {k: v.cls for k, v in _BY_NAME.items()}


def _lookup(name: str) -> Optional[ModuleCodec]:
    codec = _BY_NAME.get(name)
    if codec is None and name.startswith("pyquant."):
        # pyquant's own layers register on import of their module; importing a module of the
        # pyquant package itself is safe (a file can name it, not supply it).
        mod = name.rsplit(".", 1)[0]
        try:
            importlib.import_module(mod)
        except ImportError:
            return None
        codec = _BY_NAME.get(name)
    return codec


def _attrs(*names: str) -> Callable[[nn.Module], Dict[str, Any]]:
    def get(m: nn.Module) -> Dict[str, Any]:
        out = {}
        for n in names:
            v = getattr(m, n)
            out[n] = list(v) if isinstance(v, tuple) else v
        return out
    return get


def _register_torch_layers() -> None:
    def linear_cfg(m):
        return {"in_features": m.in_features, "out_features": m.out_features,
                "bias": m.bias is not None}

    def conv_cfg(m):
        cfg = _attrs("in_channels", "out_channels", "kernel_size", "stride", "padding",
                     "dilation", "groups", "padding_mode")(m)
        cfg["bias"] = m.bias is not None
        return cfg

    def bn_cfg(m):
        return {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum,
                "affine": m.affine, "track_running_stats": m.track_running_stats}

    def ln_cfg(m):
        return {"normalized_shape": list(m.normalized_shape), "eps": m.eps,
                "elementwise_affine": m.elementwise_affine, "bias": getattr(m, "bias") is not None}

    def empty(cls):
        # the Linear/Conv constructors initialise weights randomly; on "meta" that is free and
        # the real tensors are assigned right after
        return lambda cfg, state: cls(**cfg, device="meta")

    register_module(nn.Linear, name="torch.nn.Linear", get_config=linear_cfg,
                    build=empty(nn.Linear))
    for c in (nn.Conv1d, nn.Conv2d):
        register_module(c, name=f"torch.nn.{c.__name__}", get_config=conv_cfg, build=empty(c))
    for c in (nn.BatchNorm1d, nn.BatchNorm2d):
        register_module(c, name=f"torch.nn.{c.__name__}", get_config=bn_cfg, build=empty(c))
    register_module(nn.LayerNorm, name="torch.nn.LayerNorm", get_config=ln_cfg,
                    build=empty(nn.LayerNorm))
    register_module(nn.Embedding, name="torch.nn.Embedding",
                    get_config=_attrs("num_embeddings", "embedding_dim", "padding_idx"),
                    build=empty(nn.Embedding))
    for c in (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Identity):
        register_module(c, name=f"torch.nn.{c.__name__}")
    register_module(nn.GELU, name="torch.nn.GELU", get_config=_attrs("approximate"))
    register_module(nn.Softmax, name="torch.nn.Softmax", get_config=_attrs("dim"))
    register_module(nn.Dropout, name="torch.nn.Dropout", get_config=_attrs("p"))
    register_module(nn.Flatten, name="torch.nn.Flatten", get_config=_attrs("start_dim", "end_dim"))
    for c in (nn.MaxPool2d, nn.AvgPool2d):
        keys = ("kernel_size", "stride", "padding", "ceil_mode") + (
            ("dilation",) if c is nn.MaxPool2d else ("count_include_pad",))
        register_module(c, name=f"torch.nn.{c.__name__}", get_config=_attrs(*keys))
    register_module(nn.AdaptiveAvgPool2d, name="torch.nn.AdaptiveAvgPool2d",
                    get_config=_attrs("output_size"))
    # containers: children are rebuilt from the manifest and attached by name
    register_module(nn.Sequential, name="torch.nn.Sequential")
    register_module(nn.ModuleList, name="torch.nn.ModuleList")
    register_module(nn.ModuleDict, name="torch.nn.ModuleDict")


_register_torch_layers()


# ----------------------------------------------------------------------------- save


def _module_spec(module: nn.Module, path: str) -> Dict[str, Any]:
    cls = _plain_class(module)
    codec = _BY_CLASS.get(cls)
    if codec is None:
        # Unregistered (a user's own model class): recorded by name, rebuilt only through a
        # template passed as load(..., model=...).
        spec: Dict[str, Any] = {"type": f"{cls.__module__}.{cls.__qualname__}",
                                "registered": False}
    else:
        config = codec.get_config(module)
        try:
            json.dumps(config)
        except TypeError as err:
            raise TypeError(f"config of module {path or '<root>'} ({codec.name}) is not "
                            f"JSON-serialisable: {err}") from None
        spec = {"type": codec.name, "registered": True, "config": config}
    spec["children"] = {name: _module_spec(child, f"{path}.{name}" if path else name)
                        for name, child in module.named_children()
                        if not (name == "parametrizations" and _is_parametrized(module))}
    return spec


def _is_parametrized(module: nn.Module) -> bool:
    import torch.nn.utils.parametrize as P

    return P.is_parametrized(module)


def _plain_class(module: nn.Module) -> type:
    # torch's parametrize swaps in a generated subclass "Parametrized<Cls>"; files record <Cls>
    return type(module).__bases__[0] if _is_parametrized(module) else type(module)


def _effective_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    """``state_dict`` with pruning parametrizations baked in: for a parametrized ``weight`` the
    masked value is stored as ``weight`` and the original/mask bookkeeping is dropped. Done on
    the state, not on a deepcopy: removing a parametrization from a copy would delete the
    property from the generated class it shares with the caller's model."""
    state = model.state_dict()
    for mname, m in model.named_modules():
        if not _is_parametrized(m):
            continue
        prefix = f"{mname}." if mname else ""
        for n in m.parametrizations.keys():
            drop = f"{prefix}parametrizations.{n}."
            for k in [k for k in state if k.startswith(drop)]:
                del state[k]
            with torch.no_grad():
                state[prefix + n] = getattr(m, n).detach()
    return state


def _state_tensors(model: nn.Module) -> Dict[str, torch.Tensor]:
    state = {}
    seen = set()
    for k, v in _effective_state(model).items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"state_dict entry {k!r} is a {type(v).__name__}, not a tensor")
        if v.is_sparse or v.layout != torch.strided:
            raise TypeError(f"state_dict entry {k!r} has layout {v.layout}: store packed "
                            "sparse weights as dense index/value tensors")
        if v.is_quantized:
            raise TypeError(f"state_dict entry {k!r} is a torch quantized tensor ({v.dtype}): "
                            "use pyquant's int8 layers, which store int8 + float scales")
        v = v.detach().to("cpu").contiguous()
        # safetensors refuses tensors that share memory (tied weights): store a copy of each
        key = (v.untyped_storage().data_ptr(), v.storage_offset()) if v.numel() else None
        if key in seen:
            v = v.clone()
        seen.add(key)
        state[k] = v
    return state


def save(model: nn.Module, path: "os.PathLike[str] | str", *, compression: Optional[str] = "zstd",
         level: int = 19, metadata: Optional[Mapping[str, Any]] = None) -> int:
    """Write ``model`` to ``path`` as a pyquant model file (atomically).

    The model's tensors are stored with their dtypes; pruning parametrizations are baked in (the
    file holds the effective, masked weights). The module tree is stored so that ``load`` can
    rebuild it if every module type is registered; otherwise ``load`` needs a template model.

    Args:
        model: the module to save.
        path: destination file; written to a temporary file in the same directory, then
            renamed over ``path`` so a crash never leaves a half-written file.
        compression: ``"zstd"`` (default, lossless; pays off for int8 and pruned weights) or
            ``None``/``"none"`` (the payload is then a plain safetensors blob).
        level: zstd level (1-22).
        metadata: optional JSON-serialisable user metadata stored in the manifest.

    Returns:
        The number of bytes written.

    Raises:
        TypeError: if ``model`` is not an ``nn.Module``, a state entry is not a dense strided
            tensor, or a module config / ``metadata`` is not JSON-serialisable.
        ValueError: for an unknown ``compression``.
    """
    from safetensors.torch import save as st_save

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if compression not in _COMPRESSIONS:
        raise ValueError(f"compression must be 'zstd' or None, got {compression!r}")
    compression = None if compression == "none" else compression
    state = _state_tensors(model)
    raw = st_save(state)
    payload = raw
    if compression == "zstd":
        import zstandard

        payload = zstandard.ZstdCompressor(level=level, threads=0).compress(raw)
    manifest = {
        "format": "pyquant-model",
        "format_version": FORMAT_VERSION,
        "pyquant_version": _pyquant_version(),
        "torch_version": torch.__version__,
        "compression": compression,
        "payload_size": len(payload),
        "raw_size": len(raw),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "num_tensors": len(state),
        "model": _module_spec(model, ""),
        "metadata": dict(metadata or {}),
    }
    try:
        mbytes = json.dumps(manifest, sort_keys=True).encode("utf-8")
    except TypeError as err:
        raise TypeError(f"metadata is not JSON-serialisable: {err}") from None
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, len(mbytes), hashlib.sha256(mbytes).digest())
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".pyquant-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            f.write(mbytes)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return len(header) + len(mbytes) + len(payload)


def _pyquant_version() -> str:
    try:
        from importlib.metadata import version

        return version("pyquant")
    except Exception:  # noqa: BLE001 - running from a source tree without metadata
        return "unknown"


# ----------------------------------------------------------------------------- load


def _read(path: "os.PathLike[str] | str", verify: bool = True):
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < _HEADER.size:
        if data[:len(MAGIC)] != MAGIC[:len(data)] or not data:
            raise ModelFileError(f"{path}: not a pyquant model file (bad magic)")
        raise ModelFileError(f"{path}: truncated file ({len(data)} bytes, header needs "
                             f"{_HEADER.size})")
    magic, version, mlen, msha = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise ModelFileError(f"{path}: not a pyquant model file (bad magic {magic!r})")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path}: file format version {version} is newer than this pyquant "
                             f"reads (up to {FORMAT_VERSION}); upgrade pyquant")
    if version < 1:
        raise ModelFileError(f"{path}: invalid format version {version}")
    start = _HEADER.size
    if len(data) < start + mlen:
        raise ModelFileError(f"{path}: truncated file (manifest needs {mlen} bytes, "
                             f"{len(data) - start} present)")
    mbytes = data[start:start + mlen]
    if hashlib.sha256(mbytes).digest() != msha:
        raise ModelFileError(f"{path}: corrupt file (manifest checksum mismatch)")
    try:
        manifest = json.loads(mbytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{path}: corrupt file (manifest is not UTF-8 JSON: {err})") from None
    _check_manifest(manifest, path)
    payload = data[start + mlen:]
    if len(payload) != manifest["payload_size"]:
        kind = "truncated" if len(payload) < manifest["payload_size"] else "corrupt"
        raise ModelFileError(f"{path}: {kind} file (payload is {len(payload)} bytes, manifest "
                             f"says {manifest['payload_size']})")
    if verify and hashlib.sha256(payload).hexdigest() != manifest["payload_sha256"]:
        raise ModelFileError(f"{path}: corrupt file (payload checksum mismatch)")
    manifest["_payload_offset"] = start + mlen
    manifest["_file_size"] = len(data)
    return manifest, payload


# Manifest fields the loader relies on, with their JSON types. Checked before any is used: a
# manifest is checksummed, but a checksum only proves the bytes are the ones written, not that
# whoever wrote them told the truth.
_MANIFEST_FIELDS = {"payload_size": int, "raw_size": int, "payload_sha256": str, "model": dict}


def _check_manifest(manifest: Any, path: str) -> None:
    if not isinstance(manifest, dict):
        raise ModelFileError(f"{path}: corrupt file (manifest is a {type(manifest).__name__}, "
                             "not an object)")
    for key, typ in _MANIFEST_FIELDS.items():
        value = manifest.get(key)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise ModelFileError(f"{path}: corrupt manifest: {key!r} must be a "
                                 f"{typ.__name__}, got {value!r:.60}")
        if typ is int and value < 0:
            raise ModelFileError(f"{path}: corrupt manifest: {key!r} is negative ({value})")


def _check_spec(spec: Any, where: str) -> None:
    """A module entry of the manifest: {"type": str, "config": dict, "children": dict, ...}."""
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ModelFileError(f"module {where}: corrupt manifest entry {spec!r:.80}")
    for key in ("config", "children"):
        if not isinstance(spec.get(key, {}), dict):
            raise ModelFileError(f"module {where}: corrupt manifest entry ({key!r} must be an "
                                 f"object, got {spec[key]!r:.60})")


def _decode_payload(manifest: Dict[str, Any], payload: bytes, path: str) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load as st_load

    comp = manifest.get("compression")
    if comp == "zstd":
        import zstandard

        # The frame states its decompressed size; it must be the manifest's (a frame claiming
        # more would otherwise be allocated as claimed).
        claimed = zstandard.frame_content_size(payload)
        if claimed != manifest["raw_size"]:
            raise ModelFileError(f"{path}: corrupt file (compressed payload holds {claimed} "
                                 f"bytes, manifest says {manifest['raw_size']})")
        raw = zstandard.ZstdDecompressor().decompress(payload,
                                                      max_output_size=manifest["raw_size"])
    elif comp is None:
        raw = payload
    else:
        raise ModelFileError(f"{path}: unknown compression {comp!r}")
    if len(raw) != manifest["raw_size"]:
        raise ModelFileError(f"{path}: corrupt file (payload decodes to {len(raw)} bytes, "
                             f"manifest says {manifest['raw_size']})")
    return st_load(raw)


def _own_state(state: Mapping[str, torch.Tensor], prefix: str,
               children: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        if k.startswith(prefix):
            rest = k[len(prefix):]
            if "." not in rest or rest.split(".", 1)[0] not in children:
                out[rest] = v
    return out


def _build(spec: Dict[str, Any], state: Mapping[str, torch.Tensor], prefix: str,
           template: Optional[nn.Module]) -> nn.Module:
    where = prefix[:-1] or "<root>"
    _check_spec(spec, where)
    tname = spec["type"]
    children = spec.get("children", {})
    if template is not None and _type_name(template) == tname:
        module = template
    else:
        codec = _lookup(tname) if spec.get("registered") else None
        if codec is None:
            if template is None:
                raise ModelFileError(
                    f"module {where} has type {tname}, which pyquant cannot rebuild on its own "
                    "(not registered): pass a template, load(path, model=MyModel(...))")
            raise ModelFileError(f"module {where}: the file holds {tname} but the template has "
                                 f"{_type_name(template)}, and {tname} is not registered")
        try:
            module = codec.build(spec.get("config", {}), _own_state(state, prefix, children))
        except (TypeError, ValueError, RuntimeError) as err:  # a config the class rejects
            raise ModelFileError(f"module {where} ({tname}) cannot be rebuilt from its stored "
                                 f"config: {err}") from err
    for name, child_spec in children.items():
        # a child the parent already has (template, or made by the parent's constructor) is
        # reused when its type matches; otherwise the stored type is rebuilt and swapped in
        existing = module._modules.get(name)
        child = _build(child_spec, state, f"{prefix}{name}.", existing)
        if child is not existing:
            module.add_module(name, child)
    return module


def _type_name(module: nn.Module) -> str:
    cls = _plain_class(module)
    codec = _BY_CLASS.get(cls)
    return codec.name if codec else f"{cls.__module__}.{cls.__qualname__}"


def load(path: "os.PathLike[str] | str", model: Optional[nn.Module] = None, *,
         strict: bool = True) -> nn.Module:
    """Load a model saved by :func:`save`.

    Without ``model``, the module tree is rebuilt from the manifest (every module type must be
    registered, see :func:`register_module`). With ``model``, that template is filled in place;
    submodules whose stored type differs from the template's (e.g. the file holds a
    ``QuantLinear`` where the template has an ``nn.Linear``) are replaced by rebuilt ones.
    Tensors are assigned as stored (``load_state_dict(assign=True)``), so int8 stays int8.

    Args:
        path: the file.
        model: optional template module (for model classes that are not registered).
        strict: passed to ``load_state_dict``.

    Returns:
        The loaded module, in eval mode.

    Raises:
        ModelFileError: the file is not a pyquant model file, is truncated or corrupt
            (checksum mismatch), has a newer format version, or its modules cannot be rebuilt.
        FileNotFoundError: if ``path`` does not exist (other ``OSError``s as ``open`` raises
            them, e.g. IsADirectoryError, PermissionError).
        TypeError: path is not a str/bytes/PathLike, model not an ``nn.Module``, strict not a bool.
    """
    if not isinstance(path, (str, bytes, os.PathLike)):
        # an int would be taken by open() as a file descriptor
        raise TypeError(f"path must be a str, bytes or os.PathLike, got {type(path).__name__}")
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module or None, got {type(model).__name__}")
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be a bool, got {strict!r}")
    path = os.fspath(path)
    manifest, payload = _read(path)
    try:
        state = _decode_payload(manifest, payload, path)
    except ModelFileError:
        raise
    except Exception as err:  # noqa: BLE001 - a checksummed payload that still fails to parse
        raise ModelFileError(f"{path}: payload cannot be decoded: {err}") from err
    if manifest.get("model") is None:
        raise ModelFileError(f"{path}: file has no module tree")
    module = _build(manifest["model"], state, "", model)
    try:
        module.load_state_dict(state, strict=strict, assign=True)
    except (RuntimeError, TypeError, ValueError) as err:  # torch's checks, the layers' own
        raise ModelFileError(f"{path}: tensors do not fit the rebuilt model: {err}") from err
    return module.eval()


def inspect(path: "os.PathLike[str] | str") -> Dict[str, Any]:
    """Describe a model file without building the model.

    Args:
        path: the file.

    Returns:
        A dict: the manifest fields (format version, compression, sizes, sha256, module tree,
        metadata), ``file_size``, ``payload_offset`` and ``tensors``: ``{name: {"dtype", "shape",
        "nbytes", "nonzeros"}}``.

    Raises:
        ModelFileError: as :func:`load`.
    """
    path = os.fspath(path)
    manifest, payload = _read(path)
    state = _decode_payload(manifest, payload, path)
    info = {k: v for k, v in manifest.items() if not k.startswith("_")}
    info["file_size"] = manifest["_file_size"]
    info["payload_offset"] = manifest["_payload_offset"]
    info["tensors"] = {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape),
                           "nbytes": v.numel() * v.element_size(),
                           "nonzeros": int(torch.count_nonzero(v))}
                       for k, v in state.items()}
    return info
