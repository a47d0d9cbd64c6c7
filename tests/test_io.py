"""pyquant.save / pyquant.load: round trips, dtypes, the registry, corruption, real size gains."""

from __future__ import annotations

import io as bytesio
import json
import os
import struct

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import pyquant
import pyquant.io as pqio
from pyquant.distill import make_loader, seed_everything, train


class Int8Linear(nn.Module):
    """Test-local int8 layer (per-channel int8 weight + float scales), like issue 4's layers."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features))
        self.bias = nn.Parameter(torch.zeros(out_features))

    @classmethod
    def from_float(cls, lin):
        m = cls(lin.in_features, lin.out_features)
        w = lin.weight.detach()
        scale = (w.abs().amax(1) / 127).clamp_min(1e-12)
        m.weight.copy_(pyquant.ops.quantize(w.contiguous(), scale, axis=0))
        m.scale.copy_(scale)
        m.bias.data.copy_(lin.bias.detach())
        return m

    def forward(self, x):
        return x @ (self.weight.float() * self.scale[:, None]).t() + self.bias


class PackedSparse(nn.Module):
    """Test-local packed layer whose buffer shapes depend on the data (nnz)."""

    def __init__(self, weight=None, shape=(1, 1)):
        super().__init__()
        w = weight if weight is not None else torch.zeros(shape)
        self.shape = tuple(w.shape)
        idx = w.flatten().nonzero().flatten()
        self.register_buffer("indices", idx.to(torch.int32))
        self.register_buffer("values", w.flatten()[idx].to(torch.float16))

    def dense(self):
        out = torch.zeros(self.shape[0] * self.shape[1])
        out[self.indices.long()] = self.values.float()
        return out.view(self.shape)

    def forward(self, x):
        return x @ self.dense().t()


pqio.register_module(Int8Linear, name="tests.Int8Linear",
                     get_config=lambda m: {"in_features": m.in_features,
                                           "out_features": m.out_features})
pqio.register_module(
    PackedSparse, name="tests.PackedSparse", get_config=lambda m: {"shape": list(m.shape)},
    build=lambda cfg, state: _packed_empty(cfg["shape"], state["indices"].numel()))


def _packed_empty(shape, nnz):
    m = PackedSparse(shape=tuple(shape))
    m.indices = torch.zeros(nnz, dtype=torch.int32)
    m.values = torch.zeros(nnz, dtype=torch.float16)
    return m


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(64, 32)
        self.b = nn.Linear(32, 10)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)


@pytest.fixture(scope="module")
def trained_mlp(digits):
    x, y = digits
    seed_everything(0)
    m = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                      nn.Linear(256, 10))
    train(m, make_loader(torch.utils.data.TensorDataset(x, y), 64), epochs=3, seed=0,
          progress=False)
    return m


def cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.GELU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.1),
                         nn.Linear(32, 10))


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_round_trip_rebuilds_registered_layers(tmp_path, compression):
    torch.manual_seed(0)
    m = cnn()
    m(torch.randn(4, 1, 8, 8))  # give BatchNorm running stats
    m.eval()
    path = tmp_path / "m.pq"
    n = pyquant.save(m, path, compression=compression)
    assert n == os.path.getsize(path)
    m2 = pyquant.load(path)
    assert [type(c) for c in m2] == [type(c) for c in m]
    assert m2[4].groups == 2 and m2[5].approximate == "none"
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]) and v.dtype == m2.state_dict()[k].dtype, k


def test_dtypes_and_data_dependent_shapes_survive(tmp_path):
    torch.manual_seed(0)
    lin = nn.Linear(16, 8)
    w = torch.randn(8, 8) * (torch.rand(8, 8) > 0.6)
    m = nn.Sequential(Int8Linear.from_float(lin), nn.ReLU(), PackedSparse(w),
                      nn.LayerNorm(8).to(torch.bfloat16))
    pyquant.save(m, tmp_path / "m.pq")
    m2 = pyquant.load(tmp_path / "m.pq")
    assert isinstance(m2[0], Int8Linear) and isinstance(m2[2], PackedSparse)
    sd, sd2 = m.state_dict(), m2.state_dict()
    assert set(sd) == set(sd2)
    for k in sd:
        assert sd2[k].dtype == sd[k].dtype and torch.equal(sd2[k], sd[k]), k
    assert sd2["0.weight"].dtype == torch.int8 and sd2["2.indices"].dtype == torch.int32
    assert sd2["2.values"].numel() == int((w != 0).sum())
    assert sd2["3.weight"].dtype == torch.bfloat16
    x = torch.randn(2, 16)
    torch.testing.assert_close(m2[:3](x), m[:3](x))


def test_extra_tensor_outside_the_module_tree_is_a_clear_error(tmp_path):
    m = nn.Sequential(nn.Linear(2, 2))
    m.extra = nn.Parameter(torch.ones(3))  # not something nn.Sequential(...) would rebuild
    pyquant.save(m, tmp_path / "m.pq")
    with pytest.raises(pqio.ModelFileError, match="extra"):
        pyquant.load(tmp_path / "m.pq")


def test_unregistered_model_needs_template(tmp_path):
    m = Custom()
    pyquant.save(m, tmp_path / "c.pq")
    with pytest.raises(pqio.ModelFileError, match="template"):
        pyquant.load(tmp_path / "c.pq")
    m2 = pyquant.load(tmp_path / "c.pq", model=Custom())
    assert torch.equal(m2.a.weight, m.a.weight)


def test_template_children_are_swapped_for_stored_types(tmp_path):
    m = Custom()
    m.a = Int8Linear.from_float(m.a)
    pyquant.save(m, tmp_path / "c.pq")
    m2 = pyquant.load(tmp_path / "c.pq", model=Custom())  # template still has nn.Linear
    assert isinstance(m2.a, Int8Linear) and m2.a.weight.dtype == torch.int8
    x = torch.randn(4, 64)
    torch.testing.assert_close(m2(x), m(x))


def test_parametrized_masks_are_baked_in(tmp_path):
    import torch.nn.utils.parametrize as P

    class Mask(nn.Module):
        def __init__(self, mask):
            super().__init__()
            self.register_buffer("mask", mask)

        def forward(self, w):
            return w * self.mask

    m = nn.Sequential(nn.Linear(8, 8))
    mask = (torch.rand(8, 8) > 0.5).float()
    P.register_parametrization(m[0], "weight", Mask(mask))
    pyquant.save(m, tmp_path / "p.pq")
    assert P.is_parametrized(m[0])  # the caller's model is untouched
    m2 = pyquant.load(tmp_path / "p.pq")
    assert type(m2[0]) is nn.Linear
    assert torch.equal(m2[0].weight, m[0].weight)
    assert int((m2[0].weight == 0).sum()) >= int((mask == 0).sum())


def test_tied_tensors_are_saved(tmp_path):
    m = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    m[1].weight = m[0].weight
    pyquant.save(m, tmp_path / "t.pq")
    m2 = pyquant.load(tmp_path / "t.pq")
    assert torch.equal(m2[0].weight, m[0].weight) and torch.equal(m2[1].weight, m[0].weight)


def test_uncompressed_payload_is_plain_safetensors(tmp_path):
    from safetensors.torch import load as st_load

    m = nn.Sequential(nn.Linear(5, 3))
    pyquant.save(m, tmp_path / "m.pq", compression=None)
    info = pqio.inspect(tmp_path / "m.pq")
    raw = (tmp_path / "m.pq").read_bytes()[info["payload_offset"]:]
    st = st_load(raw)
    assert torch.equal(st["0.weight"], m[0].weight)
    assert info["tensors"]["0.weight"] == {"dtype": "float32", "shape": [3, 5], "nbytes": 60,
                                           "nonzeros": 15}


# ----------------------------------------------------------------------------- damaged files


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "good.pq"
    pyquant.save(cnn(), path)
    return path, path.read_bytes()


def _layout(data):
    _, _, mlen, _ = struct.unpack_from("<8sIQ32s", data, 0)
    return 52, 52 + mlen  # manifest start, payload start


@pytest.mark.parametrize("region", ["magic", "version", "length", "manifest_sha", "manifest",
                                    "payload_start", "payload_middle", "payload_end"])
def test_flipped_byte_anywhere_is_detected(saved, tmp_path, region):
    path, data = saved
    mstart, pstart = _layout(data)
    pos = {"magic": 2, "version": 9, "length": 13, "manifest_sha": 30, "manifest": mstart + 40,
           "payload_start": pstart, "payload_middle": (pstart + len(data)) // 2,
           "payload_end": len(data) - 1}[region]
    bad = bytearray(data)
    bad[pos] ^= 0x10
    p = tmp_path / "bad.pq"
    p.write_bytes(bytes(bad))
    with pytest.raises(pqio.ModelFileError):
        pyquant.load(p)


@pytest.mark.parametrize("keep", [0, 5, 30, "manifest", "payload"])
def test_truncated_files_are_detected(saved, tmp_path, keep):
    path, data = saved
    mstart, pstart = _layout(data)
    n = {"manifest": mstart + 10, "payload": (pstart + len(data)) // 2}.get(keep, keep)
    p = tmp_path / "short.pq"
    p.write_bytes(data[:n])
    with pytest.raises(pqio.ModelFileError, match="truncated|not a pyquant"):
        pyquant.load(p)


def test_trailing_garbage_and_foreign_files(saved, tmp_path):
    path, data = saved
    p = tmp_path / "long.pq"
    p.write_bytes(data + b"\0")
    with pytest.raises(pqio.ModelFileError, match="corrupt"):
        pyquant.load(p)
    buf = bytesio.BytesIO()
    torch.save({"w": torch.ones(2)}, buf)  # a pickle file is refused before anything is parsed
    p.write_bytes(buf.getvalue())
    with pytest.raises(pqio.ModelFileError, match="not a pyquant"):
        pyquant.load(p)
    with pytest.raises(FileNotFoundError):
        pyquant.load(tmp_path / "missing.pq")


def test_newer_format_version_is_refused(saved, tmp_path):
    path, data = saved
    bad = bytearray(data)
    struct.pack_into("<I", bad, 8, pqio.FORMAT_VERSION + 1)
    p = tmp_path / "new.pq"
    p.write_bytes(bytes(bad))
    with pytest.raises(pqio.ModelFileError, match="newer"):
        pyquant.load(p)


def test_failed_save_leaves_existing_file_intact(saved):
    path, data = saved
    with pytest.raises(TypeError, match="metadata"):
        pyquant.save(nn.Linear(2, 2), path, metadata={"x": object()})
    assert path.read_bytes() == data
    assert [f.name for f in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_bad_arguments():
    with pytest.raises(TypeError, match="nn.Module"):
        pyquant.save({"w": torch.ones(1)}, "x.pq")
    with pytest.raises(ValueError, match="compression"):
        pyquant.save(nn.Linear(1, 1), "x.pq", compression="gzip")
    with pytest.raises(ValueError, match="already registered"):
        pqio.register_module(Custom, name="torch.nn.Linear")


# ----------------------------------------------------------------------------- real size gains


def _torch_file_size(model):
    buf = bytesio.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def _int8ify(model):
    for i, m in enumerate(model):
        if isinstance(m, nn.Linear):
            model[i] = Int8Linear.from_float(m)
    return model


def _accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_int8_file_is_about_4x_smaller(tmp_path, trained_mlp, digits):
    import copy

    fp32 = _torch_file_size(trained_mlp)
    q = _int8ify(copy.deepcopy(trained_mlp))
    n = pyquant.save(q, tmp_path / "q.pq", compression=None)
    assert fp32 / n > 3.7, (fp32, n)  # int8 weights; fp32 bias and scales remain
    x, y = digits
    assert _accuracy(pyquant.load(tmp_path / "q.pq"), x, y) == _accuracy(q, x, y)


def test_pruned_90_int8_zstd_file_is_over_10x_smaller(tmp_path, trained_mlp, digits):
    import copy

    import torch.nn.utils.prune as tprune

    fp32 = _torch_file_size(trained_mlp)
    m = copy.deepcopy(trained_mlp)
    params = [(l, "weight") for l in m if isinstance(l, nn.Linear)]
    tprune.global_unstructured(params, tprune.L1Unstructured, amount=0.9)
    for l, n in params:
        tprune.remove(l, n)
    q = _int8ify(m)
    n_plain = pyquant.save(q, tmp_path / "plain.pq", compression=None)
    n_zstd = pyquant.save(q, tmp_path / "z.pq", compression="zstd")
    assert n_zstd < n_plain / 2  # entropy coding really removes the zeros' cost
    assert fp32 / n_zstd > 10, (fp32, n_zstd)
    x, y = digits
    assert _accuracy(pyquant.load(tmp_path / "z.pq"), x, y) == _accuracy(q, x, y)


# A manifest that lies consistently: its own checksum (and the payload's, where the payload is
# rewritten) recomputed, so only the loader's own checks stand between it and the model.

def _rewrite(data: bytes, edit_manifest=None, payload: bytes = None) -> bytes:
    import hashlib

    mstart, pstart = _layout(data)
    manifest = json.loads(data[mstart:pstart])
    if payload is not None:
        manifest["payload_size"] = len(payload)
        manifest["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    else:
        payload = data[pstart:]
    if edit_manifest is not None:
        edit_manifest(manifest)
    mbytes = json.dumps(manifest, sort_keys=True).encode("utf-8")
    magic, version, _, _ = struct.unpack_from("<8sIQ32s", data, 0)
    header = struct.pack("<8sIQ32s", magic, version, len(mbytes), hashlib.sha256(mbytes).digest())
    return header + mbytes + payload


def _first_linear(spec):
    if spec["type"].endswith("Linear"):
        return spec
    for child in spec.get("children", {}).values():
        found = _first_linear(child)
        if found:
            return found
    return None


def _lie_shape(m):
    _first_linear(m["model"])["config"]["in_features"] += 3


def _lie_type(m):
    _first_linear(m["model"])["type"] = "torch.nn.Conv2d"


def _lie_raw_size(m):
    m["raw_size"] = m["raw_size"] // 2


def _lie_missing_key(m):
    del m["payload_size"]


def _lie_not_a_dict(m):
    m["model"] = ["not", "a", "module"]


def _lie_compression(m):
    m["compression"] = None  # zstd bytes read as a safetensors blob


def _lie_num(m):
    m["model"]["children"] = 7


@pytest.mark.parametrize("lie", [_lie_shape, _lie_type, _lie_raw_size, _lie_missing_key,
                                 _lie_not_a_dict, _lie_compression, _lie_num],
                         ids=lambda f: f.__name__[5:])
def test_consistent_lying_manifest_is_a_clear_error(saved, tmp_path, lie):
    _, data = saved
    p = tmp_path / "lie.pq"
    p.write_bytes(_rewrite(data, lie))
    with pytest.raises(pqio.ModelFileError):
        pyquant.load(p)


def test_manifest_not_json_or_not_utf8(saved, tmp_path):
    import hashlib

    _, data = saved
    for mbytes in (b"\xff\xfe not utf-8", b"[1, 2, 3]", b"{not json"):
        magic, version, _, _ = struct.unpack_from("<8sIQ32s", data, 0)
        header = struct.pack("<8sIQ32s", magic, version, len(mbytes), hashlib.sha256(mbytes).digest())
        p = tmp_path / "bad.pq"
        p.write_bytes(header + mbytes)
        with pytest.raises(pqio.ModelFileError):
            pyquant.load(p)


@pytest.mark.parametrize("inner", ["offsets_past_end", "header_length_huge", "dtype_unknown"])
def test_payload_whose_tensor_table_lies(saved, tmp_path, inner):
    # The safetensors blob's own header rewritten (offsets beyond the data, an absurd header
    # length, an unknown dtype), recompressed, and every checksum recomputed.
    import zstandard

    _, data = saved
    mstart, pstart = _layout(data)
    raw = zstandard.ZstdDecompressor().decompress(data[pstart:])
    hlen = struct.unpack_from("<Q", raw, 0)[0]
    table = json.loads(raw[8:8 + hlen])
    body = raw[8 + hlen:]
    name = next(k for k in table if k != "__metadata__")
    if inner == "offsets_past_end":
        table[name]["data_offsets"] = [0, len(body) + 4096]
    elif inner == "dtype_unknown":
        table[name]["dtype"] = "Q7"
    hbytes = json.dumps(table).encode()
    hbytes += b" " * (-len(hbytes) % 8)
    new_hlen = len(hbytes) if inner != "header_length_huge" else 1 << 40
    new_raw = struct.pack("<Q", new_hlen) + hbytes + body
    payload = zstandard.ZstdCompressor().compress(new_raw)
    p = tmp_path / "inner.pq"
    p.write_bytes(_rewrite(data, lambda m: m.update(raw_size=len(new_raw)), payload=payload))
    with pytest.raises(pqio.ModelFileError):
        pyquant.load(p)
