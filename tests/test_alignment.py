"""Misaligned arrays (data at a byte offset that is not a multiple of the itemsize, e.g.
np.frombuffer(buf, np.float32, offset=1)) are refused by the binding gate for every float and
integer array argument, inputs and outputs alike, with the argument named and nothing
written; the kernels' element loads would otherwise be undefined behaviour (UBSan: misaligned
load in the GEMM microkernel). Through nn the error names the layer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import gemm_tolerance

import steadygrad as sg
from steadygrad import _core, nn

TIME_BUDGET_S = 10


def misaligned(a: np.ndarray, offset: int = 1) -> np.ndarray:
    """A copy of `a` whose data starts `offset` bytes past an aligned address."""
    a = np.asarray(a)
    buf = np.zeros(a.nbytes + 16, np.uint8)
    start = offset + (-buf.ctypes.data) % 16  # buf + start == offset (mod 16)
    out = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert out.ctypes.data % a.itemsize == offset % a.itemsize
    return out


def f32(*shape: int) -> np.ndarray:
    return (np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) % 7) / 7 - 0.4


def i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


def _bn_ctx(output: np.ndarray | None = None) -> Any:
    """A BatchNormContext after a ReLU-fused training forward on a (4, 3) input; `output`: the
    forward's output kept for the backward's mask."""
    ctx = _core.BatchNormContext(f32(3), f32(3), batch_stats=True, activation="relu")
    _core.batchnorm_forward(f32(4, 3), None, None, None, None, None, ctx)
    ctx.output = output
    return ctx


def _dw_geom() -> Any:
    """A depthwise geometry (multiplier 2, 3x3 'same'): x (1, 4, 5, 3) -> (1, 4, 5, 6)."""
    return _core.ConvGeometry(n=1, h=4, w=5, c_in=3, c_out=6, kh=3, kw=3, ph0=1, ph1=1, pw0=1,
                              pw1=1, groups=3)


def _pool_geom() -> Any:  # 2x2 windows, stride 2, over (1, 4, 4, 3)
    return _core.ConvGeometry(n=1, h=4, w=4, c_in=3, c_out=3, kh=2, kw=2, sh=2, sw=2)
def _conv_geom() -> Any:
    """A grouped, strided, padded conv geometry: x (2, 5, 4, 4) -> (2, 3, 3, 6)."""
    return _core.ConvGeometry(n=2, h=5, w=4, c_in=4, c_out=6, kh=3, kw=2, sh=2, sw=2, ph0=1,
                              ph1=1, pw0=1, pw1=1, groups=2)


# fn name -> builder of fresh keyword arguments (every array argument by its binding name)
CALLS: dict[str, Callable[[], dict[str, Any]]] = {
    "gemm": lambda: dict(a=f32(8, 6), b=f32(6, 5), out=f32(8, 5), bias=f32(5)),
    "linear_forward": lambda: dict(input=f32(4, 6), weight=f32(3, 6), bias=f32(3), out=f32(4, 3)),
    "linear_backward": lambda: dict(grad_output=f32(4, 3), input=f32(4, 6), weight=f32(3, 6),
                                    grad_weight=f32(3, 6), grad_bias=f32(3), grad_input=f32(4, 6)),
    **{name: lambda: dict(x=f32(3, 4), out=f32(3, 4))
       for name in ("relu", "leaky_relu", "gelu", "tanh", "sigmoid", "silu", "elu", "softplus")},
    **{name: lambda: dict(grad_output=f32(3, 4), x=f32(3, 4), out=f32(3, 4))
       for name in ("relu_backward", "leaky_relu_backward", "gelu_backward", "silu_backward",
                    "elu_backward", "softplus_backward")},
    **{name: lambda: dict(x=f32(3, 4, 5), dim=1, out=f32(3, 4, 5))
       for name in ("softmax", "log_softmax")},
    **{name: lambda: dict(grad_output=f32(3, 4, 5), y=f32(3, 4, 5), dim=1, out=f32(3, 4, 5))
       for name in ("softmax_backward", "log_softmax_backward")},
    **{name: lambda: dict(grad_output=f32(10), y=f32(10))
       for name in ("tanh_backward", "sigmoid_backward")},
    "softmax_cross_entropy": lambda: dict(logits=f32(4, 5), labels=i64(0, 4, 2, 1), weight=f32(5) + 1,
                                          out=f32(4, 5)),
    "nll_loss": lambda: dict(input=f32(4, 5), labels=i64(0, 4, 2, 1), weight=f32(5) + 1, out=f32(4, 5)),
    "embedding_forward": lambda: dict(indices=i64(0, 3, 3), weight=f32(4, 5), out=f32(3, 5)),
    "embedding_backward": lambda: dict(grad_output=f32(3, 5), indices=i64(0, 3, 3),
                                       grad_weight=f32(4, 5), scratch=np.zeros(6, np.int64)),
    "global_norm": lambda: dict(x=f32(33)),
    "add": lambda: dict(a=f32(6), b=f32(6), out=f32(6)),
    "dropout": lambda: dict(x=f32(9), p=0.5, seed=3, out=f32(9)),
    "to_channels_last": lambda: dict(x=f32(2, 3, 4, 5), out=f32(2, 4, 5, 3)),
    "to_channels_first": lambda: dict(x=f32(2, 4, 5, 3), out=f32(2, 3, 4, 5)),
    **{name: lambda: dict(input=f32(2, 3), target=f32(2, 3), out=f32(2, 3))
       for name in ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss")},
    "binary_cross_entropy": lambda: dict(input=np.abs(f32(2, 3)), target=np.abs(f32(2, 3)),
                                         weight=f32(2, 3) + 1, out=f32(2, 3)),
    "binary_cross_entropy_with_logits": lambda: dict(input=f32(2, 3), target=np.abs(f32(2, 3)),
                                                     weight=f32(2, 3) + 1, pos_weight=f32(2, 3) + 1,
                                                     out=f32(2, 3)),
    "BatchNormContext": lambda: dict(save_mean=f32(3), save_invstd=f32(3) + 1, batch_stats=True),
    "batchnorm_forward": lambda: dict(
        input=f32(4, 3), weight=f32(3) + 1, bias=f32(3), running_mean=f32(3),
        running_var=f32(3) + 1, num_batches_tracked=np.zeros((), np.int64), ctx=_bn_ctx(),
        out=f32(4, 3)),
    "batchnorm_backward": lambda: dict(
        grad_output=f32(4, 3), weight=f32(3) + 1, bias=f32(3), ctx=_bn_ctx(f32(4, 3)),
        grad_weight=f32(3), grad_bias=f32(3), grad_input=f32(4, 3)),
    "layernorm_forward": lambda: dict(input=f32(4, 5), weight=f32(5) + 1, bias=f32(5),
                                      save_mean=f32(4), save_rstd=f32(4) + 1, out=f32(4, 5)),
    "layernorm_backward": lambda: dict(
        grad_output=f32(4, 5), input=f32(4, 5), weight=f32(5) + 1, save_mean=f32(4),
        save_rstd=f32(4) + 1, grad_weight=f32(5), grad_bias=f32(5), grad_input=f32(4, 5)),
    "sgd_step": lambda: dict(param=f32(10), grad=f32(10), momentum_buffer=f32(10),
                             seg_offsets=i64(0, 6), seg_lengths=i64(6, 4), hyper=_core.SgdHyper(
                                 lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0,
                                 nesterov=False)),
    "adam_step": lambda: dict(param=f32(10), grad=f32(10), exp_avg=f32(10), exp_avg_sq=f32(10) ** 2,
                              max_exp_avg_sq=f32(10) ** 2, seg_offsets=i64(0), seg_lengths=i64(10),
                              hyper=_core.AdamHyper(lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8,
                                                    weight_decay=0.0, amsgrad=True,
                                                    decoupled=False)),
    "rmsprop_step": lambda: dict(param=f32(10), grad=f32(10), square_avg=f32(10) ** 2,
                                 grad_avg=f32(10), momentum_buffer=f32(10), seg_offsets=i64(0),
                                 seg_lengths=i64(10), hyper=_core.RmspropHyper(
                                     lr=0.1, alpha=0.9, eps=1e-8, weight_decay=0.0, momentum=0.5,
                                     centered=True)),
    "adagrad_step": lambda: dict(param=f32(10), grad=f32(10), sum=f32(10) ** 2,
                                 seg_offsets=i64(0, 6), seg_lengths=i64(6, 4),
                                 hyper=_core.AdagradHyper(lr=0.1, lr_decay=0.01, weight_decay=0.1,
                                                          eps=1e-10)),
    "nadam_step": lambda: dict(param=f32(10), grad=f32(10), exp_avg=f32(10), exp_avg_sq=f32(10) ** 2,
                               seg_offsets=i64(0), seg_lengths=i64(10),
                               hyper=_core.NadamHyper(lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8,
                                                      weight_decay=0.1, momentum_decay=4e-3,
                                                      decoupled=True)),
    "depthwise_conv2d_forward": lambda: dict(
        x=f32(1, 4, 5, 3), weight=f32(6, 1, 3, 3), bias=f32(6), geom=_dw_geom(), out=f32(1, 4, 5, 6)),
    "depthwise_conv2d_backward": lambda: dict(
        grad_out=f32(1, 4, 5, 6), x=f32(1, 4, 5, 3), weight=f32(6, 1, 3, 3), geom=_dw_geom(),
        grad_weight=f32(6, 1, 3, 3), grad_bias=f32(6), grad_input=f32(1, 4, 5, 3)),
    "conv2d_forward": lambda: dict(
        input=f32(2, 5, 4, 4), weight=f32(6, 2, 3, 2), bias=f32(6), geom=_conv_geom(),
        out=f32(2, 3, 3, 6)),
    "conv2d_backward": lambda: dict(
        grad_output=f32(2, 3, 3, 6), input=f32(2, 5, 4, 4), weight=f32(6, 2, 3, 2),
        geom=_conv_geom(), grad_weight=f32(6, 2, 3, 2), grad_bias=f32(6),
        grad_input=f32(2, 5, 4, 4)),
    "grad_norms": lambda: dict(grad=f32(10), seg_offsets=i64(0, 5), seg_lengths=i64(5, 5),
                               out=np.zeros(2)),
    "combine_norm_partials": lambda: dict(partials=np.ones(3)),
    "max_pool2d_forward": lambda: dict(input=f32(1, 4, 4, 3), geom=_pool_geom(),
                                       out=f32(1, 2, 2, 3),
                                       indices=np.zeros((1, 2, 2, 3), np.int32)),
    "max_pool2d_backward": lambda: dict(grad_output=f32(1, 2, 2, 3),
                                        indices=np.zeros((1, 2, 2, 3), np.int32),
                                        geom=_pool_geom(), grad_input=f32(1, 4, 4, 3)),
    "avg_pool2d_forward": lambda: dict(input=f32(1, 4, 4, 3), geom=_pool_geom(),
                                       out=f32(1, 2, 2, 3)),
    "avg_pool2d_backward": lambda: dict(grad_output=f32(1, 2, 2, 3), geom=_pool_geom(),
                                        grad_input=f32(1, 4, 4, 3)),
    "adaptive_avg_pool2d_forward": lambda: dict(input=f32(1, 4, 4, 3), output_size=(3, 2),
                                                out=f32(1, 3, 2, 3)),
    "adaptive_avg_pool2d_backward": lambda: dict(grad_output=f32(1, 3, 2, 3), input_size=(4, 4),
                                                 grad_input=f32(1, 4, 4, 3)),
    "grad_scale_clamp": lambda: dict(grad=f32(10), seg_offsets=i64(0), seg_lengths=i64(10),
                                     pre=_core.GradPreHyper(grad_scale=0.5)),
    # its methods take the arrays: test_step_tape_refuses_misaligned
    "StepTape": lambda: dict(batch=4, in_features=3),
}

CASES = [(fn, arg, off) for fn, make in CALLS.items() for arg, v in make().items()
         if isinstance(v, np.ndarray) for off in sorted({1, v.itemsize // 2})]


def _call(fn: str, kw: dict[str, Any]) -> Any:
    return getattr(_core, fn)(**kw)


@pytest.mark.parametrize("fn,arg,offset", CASES, ids=[f"{f}-{a}-{o}" for f, a, o in CASES])
def test_gate_refuses_misaligned(fn: str, arg: str, offset: int) -> None:
    _call(fn, CALLS[fn]())  # the aligned call goes through: the refusal below is the offset's
    kw = CALLS[fn]()
    kw[arg] = bad = misaligned(kw[arg], offset)
    before = {k: v.copy() for k, v in kw.items() if isinstance(v, np.ndarray)}
    size = bad.itemsize
    with pytest.raises(ValueError) as info:
        _call(fn, kw)
    assert str(info.value).startswith(
        f"{fn}: {arg} must be {size}-byte aligned {bad.dtype} data, got address % {size} == "
        f"{offset % size} "), str(info.value)
    assert "pass a copy (np.array(x))" in str(info.value)
    for k, v in before.items():
        np.testing.assert_array_equal(kw[k], v, err_msg=f"{fn}: {k} was modified")


def test_every_kernel_binding_is_covered() -> None:
    """Each public _core function is in the table unless it takes no array."""
    no_arrays = {"cpu_info", "set_num_threads", "get_num_threads", "set_isa", "get_isa",
                 "linear_scratch", "conv2d_scratch", "depthwise_conv2d_scratch",
                 "pool2d_scratch", "adaptive_avg_pool2d_scratch", "kernel_heap_allocations",
                 "GradPreHyper", "AdamHyper", "RmspropHyper",
                 "SgdHyper", "AdagradHyper", "NadamHyper", "ConvGeometry"}
    public = {n for n in dir(_core) if not n.startswith("_") and callable(getattr(_core, n))}
    assert public - no_arrays == set(CALLS), f"not covered: {public - no_arrays - set(CALLS)}"


def test_gate_refuses_misaligned_context_arrays() -> None:
    """What a BatchNormContext holds reaches the kernels too: a kept output is checked by the
    backward, and the saved statistics again at each use (arrays can change in place)."""
    kw = CALLS["batchnorm_backward"]()
    kw["ctx"].output = misaligned(kw["ctx"].output)
    with pytest.raises(ValueError, match=r"^batchnorm_backward: ctx\.output must be 4-byte aligned"):
        _call("batchnorm_backward", kw)
    kw = CALLS["batchnorm_forward"]()
    kw["ctx"].save_mean.shape = (3, 1)
    with pytest.raises(ValueError, match=r"^batchnorm_forward: save_mean must be 1-D, got 2-D"):
        _call("batchnorm_forward", kw)


def test_linear_layer_names_itself(isa: str) -> None:
    layer = nn.Linear(6, 3)
    x = misaligned(f32(4, 6))
    with pytest.raises(ValueError, match=r"^Linear\(6 -> 3\): linear_forward: input must be "
                                         r"4-byte aligned float32 data, got address % 4 == 1"):
        layer(x)
    y = layer(np.array(x))  # the copy the message suggests works, and is the same computation
    want = np.array(x, np.float64) @ layer.weight.data.T.astype(np.float64) + layer.bias.data
    np.testing.assert_allclose(y, want, rtol=0, atol=gemm_tolerance(6))


def test_sequential_and_ops_gemm_refuse_misaligned_frombuffer(isa: str) -> None:
    """The report's construction: np.frombuffer over a bytearray at offset 1."""
    n = 64
    a = np.frombuffer(bytearray(4 * n * n + 1), np.float32, offset=1).reshape(n, n)
    with pytest.raises(ValueError, match="gemm: a must be 4-byte aligned float32 data"):
        sg.ops.gemm(a, np.eye(n, dtype=np.float32))
    model = nn.Sequential(nn.Linear(n, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match=r"^Sequential\[0\] Linear\(.*input must be 4-byte "):
        model(a)


TAPE_CALLS: dict[str, Callable[[], dict[str, Any]]] = {
    "add_linear": lambda: dict(weight=f32(5, 3), bias=f32(5), grad_weight=f32(5, 3),
                               grad_bias=f32(5)),
    "add_batchnorm": lambda: dict(weight=f32(3), bias=f32(3), grad_weight=f32(3),
                                  grad_bias=f32(3), running_mean=f32(3), running_var=f32(3) + 1,
                                  num_batches_tracked=np.zeros((), np.int64), momentum=0.1,
                                  eps=1e-5),
    "forward": lambda: dict(input=f32(4, 3)),
}
TAPE_CASES = [(fn, arg) for fn, make in TAPE_CALLS.items() for arg, v in make().items()
              if isinstance(v, np.ndarray)]


@pytest.mark.parametrize("fn,arg", TAPE_CASES, ids=[f"{f}-{a}" for f, a in TAPE_CASES])
def test_step_tape_refuses_misaligned(fn: str, arg: str) -> None:
    """The compiled step's tape checks every array it records or runs on, as the layers'
    bindings do, and records nothing on a refusal."""
    tape = _core.StepTape(4, 3)
    if fn == "forward":
        tape.add_activation("relu")
    kw = TAPE_CALLS[fn]()
    kw[arg] = bad = misaligned(kw[arg], 1)
    layers = tape.layers
    with pytest.raises(ValueError, match=f"StepTape.{fn}: {arg} must be {bad.itemsize}-byte "
                                         f"aligned|compiled step: {arg} must be"):
        getattr(tape, fn)(**kw)
    assert tape.layers == layers
