"""The CNN configurations of steadygrad-bench (models_cnn.py): the FLOP and parameter counts
against a hand count and torch, steadygrad's and torch's networks layer by layer (same
output shapes, same state_dict keys and shapes), JAX's parameter count and output shape,
and one or two real training steps of C1 and C2 (batch cut to 2) in every framework
installed (a missing one is a visible skip). No timing is asserted."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest

from steadygrad.bench import models_cnn
from steadygrad.bench.models import BUILDERS, CONFIGS, jax_batchnorm, make_data, step_flops
from steadygrad.bench.models_cnn import CNN_CONFIGS, ConvConfig

# multiply-adds per sample, counted by hand from the architectures:
# out channels x out H x out W x (in channels x kernel area)
C1_MACS = [6 * 24 * 24 * (1 * 25),  # conv5x5 1->6, 28 -> 24
           16 * 8 * 8 * (6 * 25),   # conv5x5 6->16 after pool 24 -> 12, 12 -> 8
           (16 * 4 * 4) * 120, 120 * 84, 84 * 10]
C2_MACS = [16 * 32 * 32 * (3 * 9),                          # stem conv3x3 3->16
           16 * 32 * 32 * (16 * 9), 16 * 32 * 32 * (16 * 9),  # block 16
           32 * 16 * 16 * (16 * 9), 32 * 16 * 16 * (32 * 9),  # block 32, stride 2
           32 * 16 * 16 * 16,                                 # its 1x1 projection
           64 * 8 * 8 * (32 * 9), 64 * 8 * 8 * (64 * 9),      # block 64, stride 2
           64 * 8 * 8 * 32,                                   # its 1x1 projection
           64 * 10]                                           # fc after the global pool


def _cnn(name: str, batch: int | None = None) -> ConvConfig:
    cfg = CNN_CONFIGS[name]
    return cfg if batch is None else dataclasses.replace(cfg, batch=batch)


def test_flop_count_matches_a_hand_count() -> None:
    c1, c2 = CONFIGS["C1"], CONFIGS["C2"]
    assert c1.layer_macs == C1_MACS and c2.layer_macs == C2_MACS
    assert sum(C1_MACS) == 281_640 and sum(C2_MACS) == 12_501_632
    # x 6 per MAC (fwd, dW, dX), less the first layer's dX, times the batch of 64
    assert step_flops(c1) == 64 * (6 * 281_640 - 2 * 86_400) == 97_090_560
    assert step_flops(c2) == 64 * (6 * 12_501_632 - 2 * 442_368)
    # the MLPs keep the count, first layer's dX included
    s = CONFIGS["S"]
    assert step_flops(s) == s.flops == 6 * (784 * 256 + 256 * 256 + 256 * 10) * 64


def test_data_is_nchw_and_seeded() -> None:
    x, y = make_data(CONFIGS["C2"])
    assert x.shape == (64, 3, 32, 32) and x.dtype == np.float32 and y.max() < 10
    assert np.array_equal(x, make_data(CONFIGS["C2"])[0])


@pytest.mark.parametrize("name", sorted(CNN_CONFIGS))
def test_steadygrad_and_torch_build_the_same_network(name: str) -> None:
    torch = pytest.importorskip("torch")
    from steadygrad import nn

    cfg = _cnn(name, batch=2)
    ours = nn.Sequential(*models_cnn.modules(cfg, nn, nn.Residual))
    theirs = torch.nn.Sequential(*models_cnn.modules(cfg, torch.nn, models_cnn.torch_residual()))
    sd_ours = {k: tuple(np.asarray(v).shape) for k, v in ours.state_dict().items()}
    sd_theirs = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert sd_ours == sd_theirs
    assert sum(p.data.size for p in ours.parameters()) == cfg.params
    assert sum(p.numel() for p in theirs.parameters()) == cfg.params
    ours.train()
    theirs.train()
    x, _ = make_data(cfg)
    h, t = x, torch.from_numpy(x)
    for (key, a), b in zip(ours._modules.items(), theirs, strict=True):  # layer by layer
        h, t = a(h), b(t)
        assert h.shape == tuple(t.shape), (name, key, type(a).__name__)
    assert h.shape == (2, cfg.classes)


@pytest.mark.parametrize("name", ["C1", "C2"])
def test_jax_network_has_the_same_parameter_count_and_output(name: str) -> None:
    jax = pytest.importorskip("jax")
    cfg = _cnn(name, batch=2)
    params, state, apply = models_cnn.jax_net(cfg, jax.random.PRNGKey(0), jax_batchnorm)
    assert sum(leaf.size for leaf in jax.tree_util.tree_leaves(params)) == cfg.params
    x, _ = make_data(cfg)
    # shapes only, nothing compiled (the step test below runs it)
    logits, new_state = jax.eval_shape(apply, params, state, x.transpose(0, 2, 3, 1))
    assert logits.shape == (2, cfg.classes)
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)


def _weights(built: Any, framework: str) -> np.ndarray:
    if framework == "steadygrad":
        return np.concatenate([p.data.ravel() for p in built.model.parameters()])
    if framework == "torch":
        return np.concatenate([p.detach().numpy().ravel() for p in built.model.parameters()])
    jax = pytest.importorskip("jax")
    return np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(built.model[0])])


@pytest.mark.parametrize("framework", ["steadygrad", "torch", "jax"])
@pytest.mark.parametrize("name", ["C1", "C2"])
def test_two_training_steps_run_and_move_the_weights(name: str, framework: str) -> None:
    if framework != "steadygrad":
        pytest.importorskip(framework)
    if framework == "jax":
        pytest.importorskip("optax")
    cfg = _cnn(name, batch=2)
    built = BUILDERS[framework](cfg, *make_data(cfg))
    before = _weights(built, framework).copy()
    assert before.size == cfg.params
    for _ in range(2):
        out = float(built.step())  # a grad norm (steadygrad, torch) or the loss (JAX)
        assert math.isfinite(out) and out > 0
    after = _weights(built, framework)
    assert np.all(np.isfinite(after)) and not np.array_equal(before, after)
    # Adam's first steps move each weight by about lr
    assert 0 < np.abs(after - before).max() <= 2.5e-3
