"""QuantLinear / QuantConv2d: exact against the pure-torch reference of the same scheme, close
to the float layers, and ordinary nn.Modules (state_dict, deepcopy, inference_mode, repr)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import pyquant
from pyquant import reference
from pyquant.nn import QuantConv2d, QuantLinear


def _linear(k, n, bias=True, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(k, n, bias=bias)


def _ref(q: QuantLinear, x, act=None):
    act = act or q.act
    kw = {}
    if act == "static":
        kw = dict(static_scale=float(q.input_scale), static_zero_point=int(q.input_zero_point))
    return reference.quant_linear(x, q.weight_int8(), q.weight_scales(), q.bias_values(), act=act, **kw)


@pytest.mark.parametrize("shape", [(1, 70), (3, 70), (2, 5, 70), (0, 70), (4, 1, 2, 70)])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_reference_exactly(isa, shape, bias):
    lin = _linear(70, 33, bias)
    q = QuantLinear.from_float(lin)
    x = torch.randn(shape) * 2
    y = q(x)
    assert y.shape == (*shape[:-1], 33)
    assert torch.equal(y, _ref(q, x))


@pytest.mark.parametrize("m", [1, 4, 16, 130])
def test_close_to_float_linear(isa, threads, m):
    lin = _linear(768, 300)
    q = QuantLinear.from_float(lin)
    x = torch.randn(m, 768)
    with torch.no_grad():
        want = lin(x)
    got = q(x)
    assert torch.equal(got, _ref(q, x))
    # int8 per-channel weights + per-row uint8 activations: relative error ~1%.
    rel = (got - want).norm() / want.norm()
    assert rel < 0.02, rel


def test_auto_act_is_8bit_with_vnni_and_7bit_without():
    q = QuantLinear.from_float(_linear(16, 8))
    assert q.act == ("per_row" if "avx512vnni" in pyquant.supported_isas() else "per_row7")
    q8 = QuantLinear.from_float(_linear(16, 8), pyquant.Int8DynamicConfig(act="per_row"))
    assert q8.act == "per_row"


@pytest.mark.parametrize("shape", [(1, 70), (5, 70), (2, 9, 70), (0, 70)])
def test_per_row7_matches_reference(isa, shape):
    lin = _linear(70, 40)
    q = QuantLinear.from_float(lin, pyquant.Int8DynamicConfig(act="per_row7"))
    x = torch.randn(shape) * 3
    assert torch.equal(q(x), _ref(q, x, "per_row7"))
    with torch.no_grad():
        want = lin(x)
    if want.numel():
        assert (q(x) - want).norm() / want.norm() < 0.03


def test_per_tensor_and_static(isa):
    lin = _linear(64, 48)
    x = torch.randn(9, 64)
    qt = QuantLinear.from_float(lin, pyquant.Int8DynamicConfig(act="per_tensor"))
    assert torch.equal(qt(x), _ref(qt, x, "per_tensor"))
    calib = [torch.randn(9, 64) for _ in range(4)]
    model = nn.Sequential(lin)
    qs = pyquant.quantize_(copy.deepcopy(model), pyquant.Int8StaticConfig(calibration_loader=calib))[0]
    assert qs.act == "static" and "static" in repr(qs)
    assert torch.equal(qs(x), _ref(qs, x, "static"))
    with torch.no_grad():
        want = lin(x)
    assert (qs(x) - want).norm() / want.norm() < 0.05


def test_state_dict_roundtrip_deepcopy_inference_mode():
    lin = _linear(50, 20)
    q = QuantLinear.from_float(lin)
    x = torch.randn(3, 50)
    y = q(x)
    sd = q.state_dict()
    assert set(sd) == {"weight_packed", "weight_scale", "bias"}
    fresh = QuantLinear(50, 20)
    fresh.load_state_dict(sd)
    assert torch.equal(fresh(x), y)  # column sums rebuilt on load
    assert torch.equal(copy.deepcopy(q)(x), y)
    with torch.inference_mode():
        assert torch.equal(q(x), y)
    with torch.no_grad():
        assert torch.equal(q(x), y)
    r = repr(q)
    assert "int8 per-channel" in r and "per_row" in r and "in_features=50" in r


def test_non_contiguous_and_double_input():
    q = QuantLinear.from_float(_linear(16, 8))
    x = torch.randn(16, 6).t()
    assert torch.equal(q(x), q(x.contiguous()))
    assert torch.equal(q(x.double()), q(x))


def test_errors():
    with pytest.raises(TypeError):
        QuantLinear.from_float(nn.Conv2d(2, 2, 1))
    q = QuantLinear.from_float(_linear(16, 8))
    with pytest.raises(ValueError, match="features"):
        q(torch.randn(2, 15))
    with pytest.raises(ValueError, match="NaN"):
        q(torch.full((2, 16), float("nan")))
    bad = _linear(4, 4)
    with torch.no_grad():
        bad.weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        QuantLinear.from_float(bad)


def _conv_reference(qc: QuantConv2d, x):
    """Same scheme in plain torch: im2col, uint8 rows over the whole row, per-group GEMM."""
    cols = torch.nn.functional.unfold(x, qc.kernel_size, dilation=qc.dilation, padding=qc.padding,
                                      stride=qc.stride)
    b = x.shape[0]
    x2 = cols.transpose(1, 2).reshape(-1, cols.shape[1])
    q, sa, za = reference.quantize_activations(x2, qc.act)
    w, ws, bias = qc.weight_int8(), qc.weight_scales(), qc.bias_values()
    g, kg, ng = qc.groups, x2.shape[1] // qc.groups, qc.out_channels // qc.groups
    outs = []
    for gi in range(g):
        qa = q[:, gi * kg:(gi + 1) * kg].to(torch.int64)
        wg = w[gi * ng:(gi + 1) * ng].to(torch.int64)
        acc = qa @ wg.t() - za.to(torch.int64).reshape(-1, 1) * wg.sum(1).reshape(1, -1)
        s = sa.reshape(-1, 1) * ws[gi * ng:(gi + 1) * ng].reshape(1, -1)
        y = acc.to(torch.int32).to(torch.float32) * s
        if bias is not None:
            y = y + bias[gi * ng:(gi + 1) * ng]
        outs.append(y)
    y = torch.cat(outs, dim=1)
    ho = (x.shape[2] + 2 * qc.padding[0] - qc.dilation[0] * (qc.kernel_size[0] - 1) - 1) // qc.stride[0] + 1
    return y.reshape(b, ho, -1, qc.out_channels).permute(0, 3, 1, 2)


@pytest.mark.parametrize("cfg", [
    dict(in_channels=3, out_channels=8, kernel_size=3),
    dict(in_channels=6, out_channels=9, kernel_size=3, stride=2, padding=1, groups=3),
    dict(in_channels=4, out_channels=4, kernel_size=(3, 1), padding=(2, 0), dilation=2, groups=4),
    dict(in_channels=5, out_channels=7, kernel_size=1, bias=False),
])
# per_row, per_row7: im2col and quantization fused (quant_conv2d); per_tensor: im2col_f32, GEMM
@pytest.mark.parametrize("act", ["per_row", "per_row7", "per_tensor"])
def test_conv2d(isa, cfg, act):
    torch.manual_seed(0)
    conv = nn.Conv2d(**cfg)
    qc = QuantConv2d.from_float(conv, pyquant.Int8DynamicConfig(act=act))
    x = torch.randn(2, cfg["in_channels"], 11, 10)
    with torch.no_grad():
        want = conv(x)
    got = qc(x)
    assert got.shape == want.shape
    assert torch.equal(got, _conv_reference(qc, x))
    assert (got - want).norm() / want.norm() < 0.03
    fresh = QuantConv2d(**cfg, act=act)
    fresh.load_state_dict(qc.state_dict())
    assert torch.equal(fresh(x), got)


@pytest.mark.parametrize("nhwc", [False, True])
@pytest.mark.parametrize("geom", [
    dict(kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1)),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(0, 2), dilation=(1, 2)),
    dict(kernel_size=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1)),
    dict(kernel_size=(5, 5), stride=(3, 2), padding=(2, 1), dilation=(1, 1)),
])
def test_im2col_matches_unfold(threads, nhwc, geom):
    # QuantConv2d's native im2col: F.unfold's windows, transposed to rows, bit for bit, from
    # NCHW or channels-last memory; one process runs every geometry, so the reused padded
    # buffer must not carry one call's values into the next one's border.
    from pyquant import _C
    g = torch.Generator().manual_seed(1)
    # the last shape is large enough to be split over the pool's tasks
    for b, c, h, w in ((2, 3, 9, 7), (1, 5, 6, 11), (3, 16, 30, 30)):
        x = torch.randn(b, c, h, w, generator=g) + 5.0  # no zeros: a missed border shows
        want = F.unfold(x, **geom).transpose(1, 2).reshape(-1, c * geom["kernel_size"][0] *
                                                             geom["kernel_size"][1])
        src = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1) if nhwc else x
        out = torch.full(want.shape, float("nan"))
        _C.im2col_f32(src.contiguous().numpy(), nhwc, b, c, h, w, *geom["kernel_size"],
                      *geom["stride"], *geom["padding"], *geom["dilation"], out.numpy())
        assert torch.equal(out, want)
    with pytest.raises(ValueError, match="out must have"):
        _C.im2col_f32(x.numpy(), False, b, c, h, w, 3, 3, 1, 1, 1, 1, 1, 1, out[:-1].numpy())
    with pytest.raises(ValueError, match="larger than the padded input"):
        _C.im2col_f32(x.numpy(), False, b, c, h, w, h + 1, 3, 1, 1, 0, 0, 1, 1, out.numpy())


@pytest.mark.parametrize("act", ["per_row", "per_row7"])
def test_conv2d_rows_split_over_tasks(threads, act):
    # Large enough that the fused im2col + quantize splits its rows over the pool's tasks.
    torch.manual_seed(0)
    qc = QuantConv2d.from_float(nn.Conv2d(16, 24, 3, padding=1, groups=2),
                                pyquant.Int8DynamicConfig(act=act))
    x = torch.randn(3, 16, 30, 30)
    assert torch.equal(qc(x), _conv_reference(qc, x))
    assert torch.equal(qc(x.contiguous(memory_format=torch.channels_last)), qc(x))


def test_conv2d_input_layouts():
    # NCHW, channels-last (what a QuantConv2d returns), strided and float64 inputs: one result.
    torch.manual_seed(0)
    qc = QuantConv2d.from_float(nn.Conv2d(6, 8, 3, padding=1))
    x = torch.randn(2, 6, 9, 12)
    want = qc(x)
    assert torch.equal(qc(x.contiguous(memory_format=torch.channels_last)), want)
    wide = torch.randn(2, 6, 9, 24)
    wide[..., ::2] = x
    assert torch.equal(qc(wide[..., ::2]), want)
    assert torch.equal(qc(x.double()), want)
    chained = QuantConv2d.from_float(nn.Conv2d(8, 4, 3, padding=1))
    assert torch.equal(chained(want), chained(want.contiguous()))


@pytest.mark.parametrize("assign", [False, True])
def test_cached_native_arguments_follow_new_weights(assign):
    # The forward caches numpy views of its buffers; loading other weights must be seen.
    q1, q2 = QuantLinear.from_float(_linear(40, 24, seed=1)), QuantLinear.from_float(_linear(40, 24, seed=2))
    x = torch.randn(3, 40)
    before = q1(x)
    q1.load_state_dict(q2.state_dict(), assign=assign)
    assert torch.equal(q1(x), q2(x)) and not torch.equal(q1(x), before)


def test_large_outputs_reuse_memory_only_after_release():
    # Outputs of >= 1 MB come from a pool (no page faults per forward); a held output, or a
    # view of it, must never be handed out again, and a released one is reused.
    from pyquant import _alloc

    torch.manual_seed(0)
    q = QuantLinear.from_float(torch.nn.Linear(64, 1024))
    xs = [torch.randn(512, 64) for _ in range(3)]  # 512 x 1024 floats = 2 MB
    size = 512 * 1024 * 4
    with torch.no_grad():
        want = [q(x).clone() for x in xs]
        _alloc.clear()
        y0 = q(xs[0])
        view = q(xs[1])[10:20]  # only a view of this output survives
        y2 = q(xs[2])
        for _ in range(3):
            q(xs[2])  # transient outputs recycle one buffer among themselves
        assert _alloc.pooled_bytes() == size
        assert torch.equal(y0, want[0]) and torch.equal(view, want[1][10:20])
        assert torch.equal(y2, want[2])
        ptrs = {y0.data_ptr(), view.untyped_storage().data_ptr(), y2.data_ptr()}
        assert len(ptrs) == 3
        p0 = y0.data_ptr()
        del y0
        assert _alloc.pooled_bytes() == 2 * size
        y3 = q(xs[1])  # the last buffer released is the first reused
        assert y3.data_ptr() == p0 and torch.equal(y3, want[1])
        assert torch.equal(view, want[1][10:20]) and torch.equal(y2, want[2])
        del view
        assert _alloc.pooled_bytes() == 2 * size  # the view was the last user of its buffer
