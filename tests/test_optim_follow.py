"""An optimizer follows its parameters when a container built later moves them into its own
flat buffer: `opt = SGD(backbone.parameters()); model = nn.Sequential(backbone, head)` trains
the backbone exactly as torch does, with the state taken before the rebuild carried over value
for value (step, wrap in Sequential, step again), through zero_grad and clip_grad_norm_."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from optim_helpers import torch_one_thread  # noqa: F401 (autouse fixture)

import steadygrad as sg
from steadygrad import nn, optim
from steadygrad.nn import Parameter

BATCH, D_IN, D_MID, D_OUT, N_CLS = 16, 6, 8, 5, 3


def twin(sg_layer: nn.Linear) -> torch.nn.Linear:
    t = torch.nn.Linear(sg_layer.in_features, sg_layer.out_features)
    with torch.no_grad():
        t.weight.copy_(torch.tensor(sg_layer.weight.data))
        t.bias.copy_(torch.tensor(sg_layer.bias.data))
    return t


def assert_matches(sg_params, t_params, what):
    for i, (p, tp) in enumerate(zip(sg_params, t_params, strict=True)):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=f"{what}: parameter {i} {p.shape}")


def assert_state_matches(opt, topt, sg_params, t_params, names, what):
    for i, (p, tp) in enumerate(zip(sg_params, t_params, strict=True)):
        for name in names:
            np.testing.assert_allclose(opt.state[p][name], topt.state[tp][name].numpy(),
                                       rtol=1e-5, atol=1e-7, err_msg=f"{what}: {name} of {i}")


CASES = {
    # optimizer kwargs, state buffers to compare, how gradients are clipped
    "sgd-momentum": (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9), ["momentum_buffer"], None),
    "sgd-momentum-clip_grad_norm_": (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True),
                                     ["momentum_buffer"], "function"),
    "adam": (optim.Adam, torch.optim.Adam, dict(lr=1e-2), ["exp_avg", "exp_avg_sq"], None),
    "adam-fused-clip": (optim.Adam, torch.optim.Adam, dict(lr=1e-2, amsgrad=True),
                        ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"], "fused"),
}
MAX_NORM = 0.05  # below every gradient norm here, so clipping acts on every step


@pytest.mark.parametrize("zero_grad_to_none", [True, False], ids=["zero_grad-none", "zero_grad-zeros"])
@pytest.mark.parametrize("case", list(CASES))
def test_optimizer_follows_backbone_into_sequential_like_torch(case, zero_grad_to_none):
    cls, tcls, kw, names, clip = CASES[case]
    rng = np.random.default_rng(0)
    # The layers' initial values from a fixed seed, not from whatever the tests before left in
    # sg's generator: a gradient element near Adam's eps makes its first update (~ lr * g /
    # (|g| + eps)) sensitive beyond rtol 1e-5 to the two libraries' summation orders.
    sg.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(D_IN, D_MID), nn.ReLU(), nn.Linear(D_MID, D_OUT))
    tbackbone = torch.nn.Sequential(twin(backbone[0]), torch.nn.ReLU(), twin(backbone[2]))
    fused = {"max_grad_norm": MAX_NORM} if clip == "fused" else {}
    opt = cls(backbone.parameters(), **kw, **fused)
    topt = tcls(tbackbone.parameters(), **kw)
    loss_fn = nn.MSELoss()

    def step(model, tmodel, width, sg_opts, t_opts, clip_params, t_clip_params):
        x = rng.standard_normal((BATCH, D_IN)).astype(np.float32)
        y = rng.standard_normal((BATCH, width)).astype(np.float32)
        for o in sg_opts:
            o.zero_grad(set_to_none=zero_grad_to_none)
        for o in t_opts:
            o.zero_grad(set_to_none=zero_grad_to_none)
        loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        torch.nn.functional.mse_loss(tmodel(torch.tensor(x)), torch.tensor(y)).backward()
        want = None
        if clip is not None:
            want = float(torch.nn.utils.clip_grad_norm_(t_clip_params, MAX_NORM))
            assert want > MAX_NORM
        if clip == "function":
            got = optim.clip_grad_norm_(clip_params, MAX_NORM)
            np.testing.assert_allclose(got, want, rtol=1e-5)
        norms = [o.step() for o in sg_opts]
        for o in t_opts:
            o.step()
        if clip == "fused":
            np.testing.assert_allclose(norms[0], want, rtol=1e-5)

    for t in range(3):  # the backbone alone: state builds up in the backbone's own storage
        step(backbone, tbackbone, D_OUT, [opt], [topt], backbone.parameters(), tbackbone.parameters())
        assert_matches(backbone.parameters(), tbackbone.parameters(), f"step {t}")
    old_storage = opt.storage

    head = nn.Linear(D_OUT, N_CLS)
    model = nn.Sequential(backbone, head)  # moves the backbone's parameters into a new buffer
    tmodel = torch.nn.Sequential(tbackbone, twin(head))
    head_opt = optim.SGD(head.parameters(), lr=0.1)  # a second optimizer, made after the build
    thead_opt = torch.optim.SGD(tmodel[1].parameters(), lr=0.1)
    assert backbone[0].weight.storage is model.flat_storage is not old_storage
    assert_state_matches(opt, topt, backbone.parameters(), tbackbone.parameters(), names, "rebuilt")

    before = [p.data.copy() for p in backbone.parameters()]
    for t in range(3, 8):
        step(model, tmodel, N_CLS, [opt, head_opt], [topt, thead_opt], backbone.parameters(),
             tbackbone.parameters())
        assert_matches(model.parameters(), tmodel.parameters(), f"step {t}")
        assert_state_matches(opt, topt, backbone.parameters(), tbackbone.parameters(), names, f"step {t}")
    assert opt.storage is model.flat_storage is head_opt.storage
    assert all((p.data != b).any() for p, b in zip(backbone.parameters(), before, strict=True))


def test_state_moves_to_the_new_layout_value_for_value():
    rng = np.random.default_rng(1)
    backbone = nn.Sequential(nn.Linear(D_IN, D_MID), nn.ReLU(), nn.Linear(D_MID, D_OUT))
    opt = optim.Adam([{"params": backbone[0].parameters()},
                      {"params": backbone[2].parameters(), "lr": 1e-3}], lr=1e-2, amsgrad=True)
    for _ in range(2):
        for p in backbone.parameters():
            p.grad = rng.standard_normal(p.shape).astype(np.float32)
        opt.step()
    sd = opt.state_dict()
    old = opt.storage
    generation = old.generation
    model = nn.Sequential(nn.Linear(3, D_IN), backbone)  # the backbone now sits at new offsets
    assert old.generation > generation
    assert [p.offset for p in backbone.parameters()] != [old.offsets[i] for i in range(4)]
    after = opt.state_dict()
    for i, st in sd["state"].items():
        for k, v in st.items():
            assert np.asarray(after["state"][i][k]).tobytes() == np.asarray(v).tobytes(), (i, k)
    st = opt.state[backbone[2].weight]
    assert np.shares_memory(st["exp_avg"], opt._bufs["exp_avg"])
    assert opt.storage is model.flat_storage
    assert opt.state_bytes() == 3 * 4 * model.flat_storage.numel


def test_parameters_split_across_storages_are_gathered_again_like_torch():
    """The optimizer's parameters end up in two storages (the backbone in the model's, an
    extra layer in its own): the optimizer flattens them together again and still matches
    torch; the model keeps working from wherever its parameters are."""
    rng = np.random.default_rng(2)
    backbone = nn.Linear(D_IN, D_OUT)
    extra = nn.Linear(D_IN, D_OUT)
    tbackbone, textra = twin(backbone), twin(extra)
    opt = optim.SGD([*backbone.parameters(), *extra.parameters()], lr=0.1, momentum=0.9)
    topt = torch.optim.SGD([*tbackbone.parameters(), *textra.parameters()], lr=0.1, momentum=0.9)
    sg_params = [*backbone.parameters(), *extra.parameters()]
    t_params = [*tbackbone.parameters(), *textra.parameters()]

    def step():
        for p, tp in zip(sg_params, t_params, strict=True):
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad = g
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()

    step()
    model = nn.Sequential(backbone, nn.ReLU(), nn.Linear(D_OUT, N_CLS))
    assert backbone.weight.storage is not extra.weight.storage
    for _ in range(3):
        step()
        assert_matches(sg_params, t_params, "after the rebuild")
    assert backbone.weight.storage is extra.weight.storage is opt.storage
    x = rng.standard_normal((4, D_IN)).astype(np.float32)
    tx = torch.tensor(x)
    with torch.no_grad():
        want = torch.nn.functional.relu(tbackbone(tx)) @ torch.tensor(model[2].weight.data).T
    np.testing.assert_allclose(model(x), want.numpy() + model[2].bias.data, rtol=1e-5, atol=1e-6)


def test_nothing_moved_keeps_the_binding():
    rng = np.random.default_rng(3)
    ps = [Parameter(rng.standard_normal(s).astype(np.float32)) for s in [(3, 2), (4,)]]
    opt = optim.Adam(ps)
    storage, bufs = opt.storage, None
    for _ in range(3):
        for p in ps:
            p.grad = np.ones(p.shape, np.float32)
        opt.step()
        bufs = bufs or dict(opt._bufs)
        assert opt.storage is storage and all(opt._bufs[k] is v for k, v in bufs.items())
    Parameter(np.zeros(5, np.float32))  # a new parameter elsewhere changes nothing here
    assert opt.storage is storage and all(opt._bufs[k] is v for k, v in bufs.items())
