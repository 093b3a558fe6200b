"""Sequential editing (append, extend, insert, [i] = m, del, +, +=, pop, int and slice
indexing) and ModuleList, side by side with torch 2.13: the same modules at the same keys
(state_dict keys after each edit), the plan, the used-once rule and the flat parameter storage
kept right, training after an edit (optimizer built after it: trains everything; built before:
keeps its own parameters, as torch's), and the errors."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import pytest
import torch

from steadygrad import nn, optim


def pair(i: int, o: int, seed: int) -> tuple[nn.Linear, torch.nn.Linear]:
    rng = np.random.default_rng(seed)
    m, t = nn.Linear(i, o), torch.nn.Linear(i, o)
    w = rng.standard_normal((o, i)).astype(np.float32) * 0.5
    b = rng.standard_normal(o).astype(np.float32) * 0.1
    m.weight.data, m.bias.data = w, b
    with torch.no_grad():
        t.weight.copy_(torch.from_numpy(w))
        t.bias.copy_(torch.from_numpy(b))
    return m, t


def same_structure(sg_c: nn.Module, t_c: torch.nn.Module) -> None:
    assert list(sg_c.state_dict()) == list(t_c.state_dict())
    assert [k for k, _ in sg_c.named_children()] == [k for k, _ in t_c.named_children()]
    assert [type(m).__name__ for m in sg_c.children()] == [type(m).__name__ for m in t_c.children()]
    for k, v in sg_c.state_dict().items():
        np.testing.assert_array_equal(v, t_c.state_dict()[k].numpy(), err_msg=k)


def flat_ok(model: nn.Module) -> None:
    """Every parameter in the one flat storage, each view inside it."""
    s = model.flat_storage
    assert s is not None
    for p in model.parameters():
        assert p.storage is s and np.shares_memory(p.data, s.data)


def edits() -> list[tuple[str, Callable[[object, Callable[[], tuple]], None]]]:
    """(name, edit(container, make)) where make() returns a fresh (sg, torch) module pair; each
    edit is applied to both containers."""
    return [
        ("append", lambda c, mk: c.append(mk())),
        ("insert0", lambda c, mk: c.insert(0, mk())),
        ("insert-1", lambda c, mk: c.insert(-1, mk())),
        ("insert_end", lambda c, mk: c.insert(len(c), mk())),
        ("setitem-2", lambda c, mk: c.__setitem__(-2, mk())),
        ("del1", lambda c, mk: c.__delitem__(1)),
        ("del_slice", lambda c, mk: c.__delitem__(slice(0, 2))),
        ("extend", lambda c, mk: c.extend([mk(), mk()])),
        ("pop0", lambda c, mk: c.pop(0)),
    ]


@pytest.mark.parametrize("kind", ["Sequential", "ModuleList"])
@pytest.mark.parametrize("name,edit", edits(), ids=[n for n, _ in edits()])
def test_edit_like_torch(kind, name, edit):
    made = [pair(3, 3, s) for s in range(3)]
    sg_c = getattr(nn, kind)(*(m for m, _ in made)) if kind == "Sequential" else \
        nn.ModuleList([m for m, _ in made])
    t_c = getattr(torch.nn, kind)(*(t for _, t in made)) if kind == "Sequential" else \
        torch.nn.ModuleList([t for _, t in made])
    seeds = iter(range(10, 20))
    fresh: list[tuple] = []

    def make_for(which: int):
        def mk():
            if which == 0:
                fresh.append(pair(3, 3, next(seeds)))
                return fresh[-1][0]
            return fresh.pop(0)[1]
        return mk

    edit(sg_c, make_for(0))
    if kind == "ModuleList" and name == "insert-1":
        # torch's ModuleList.insert raises KeyError('-1') for a negative index; here it counts
        # from the end, as torch's Sequential.insert does
        t_c.insert(len(t_c) - 1, make_for(1)())
    else:
        edit(t_c, make_for(1))
    same_structure(sg_c, t_c)
    if len(sg_c):
        flat_ok(sg_c)
    assert len(sg_c) == len(t_c)


@pytest.mark.parametrize("kind", ["Sequential", "ModuleList"])
def test_indexing_and_slicing_like_torch(kind):
    made = [pair(3, 3, s) for s in range(5)]
    sg_c = nn.Sequential(*(m for m, _ in made)) if kind == "Sequential" else \
        nn.ModuleList([m for m, _ in made])
    t_c = torch.nn.Sequential(*(t for _, t in made)) if kind == "Sequential" else \
        torch.nn.ModuleList([t for _, t in made])
    storage = sg_c.flat_storage
    for i in range(-5, 5):
        assert sg_c[i] is made[i][0]
    for sl in (slice(1, 3), slice(None, None, 2), slice(-2, None), slice(3, 1)):
        v, tv = sg_c[sl], t_c[sl]
        assert type(v) is type(sg_c)
        assert [m for m in v] == [m for m, _ in made[sl]]  # the same modules
        same_structure(v, tv)  # Sequential keeps the keys, ModuleList renumbers (torch's)
    assert sg_c.flat_storage is storage, "a slice moved the parameters"
    for bad in (5, -6):
        with pytest.raises(IndexError, match=f"index {bad} is out of range"):
            sg_c[bad]
        with pytest.raises(IndexError, match=f"index {bad} is out of range"):
            t_c[bad]
    with pytest.raises(TypeError, match="indices must be integers or slices, not str"):
        sg_c["1"]


def test_sequential_add_iadd_and_ordereddict_like_torch():
    (a, ta), (b, tb), (c, tc) = (pair(3, 3, s) for s in range(3))
    s = nn.Sequential(OrderedDict([("fc", a), ("act", nn.ReLU())]))
    t = torch.nn.Sequential(OrderedDict([("fc", ta), ("act", torch.nn.ReLU())]))
    same_structure(s, t)
    s2, t2 = s + nn.Sequential(b), t + torch.nn.Sequential(tb)
    same_structure(s2, t2)
    s2 += nn.Sequential(c)
    t2 += torch.nn.Sequential(tc)
    same_structure(s2, t2)
    flat_ok(s2)
    for bad in (nn.ModuleList([nn.ReLU()]), [nn.ReLU()]):
        with pytest.raises(ValueError, match="add operator supports only objects of Sequential"):
            s + bad
    with pytest.raises(KeyError, match=r"got: a\.b"):
        nn.Sequential(OrderedDict([("a.b", nn.ReLU())]))


def test_failed_edit_changes_nothing():
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    s = nn.Sequential(a, nn.ReLU(), b)
    keys, storage = list(s.state_dict()), s.flat_storage
    for bad in (lambda: s.append(a), lambda: s.insert(0, b), lambda: s.extend([nn.ReLU(), a]),
                lambda: s.__setitem__(1, b)):
        with pytest.raises(ValueError, match="same object"):
            bad()
        assert list(s.state_dict()) == keys and list(s) == [a, s[1], b]
        assert s.flat_storage is storage
    for bad, exc, msg in [(lambda: s.append(3), TypeError, "must be an nn.Module, got int"),
                          (lambda: s.insert(5, nn.ReLU()), IndexError, "Index out of range: 5"),
                          (lambda: s.extend(7), TypeError, "should be called with an iterable"),
                          (lambda: s.__delitem__(3), IndexError, "index 3 is out of range")]:
        with pytest.raises(exc, match=msg):
            bad()
        assert list(s.state_dict()) == keys


def test_edit_between_forward_and_backward_raises():
    s = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    x = np.ones((2, 3), np.float32)
    y = s(x)
    s.append(nn.Linear(4, 2))
    with pytest.raises(RuntimeError, match=r"changed .* after the forward; run the forward again"):
        s.backward(np.ones_like(y))
    y = s(x)
    assert y.shape == (2, 2)
    s.backward(np.ones_like(y))


def test_plan_follows_edits():
    """Linear+ReLU fuse; after inserting a layer between them they no longer do, and the shape
    check runs again (a mismatching append is reported before any layer runs)."""
    s = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    assert s.plan()[0].epilogue == "relu"
    s.insert(1, nn.Tanh())
    assert [lp.epilogue for lp in s.plan()] == ["none", "none", "none"]
    x = np.ones((2, 3), np.float32)
    s(x)
    s.backward(np.ones((2, 4), np.float32))
    s.append(nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"Sequential\[3\]"):
        s(x)


def _train(model, tmodel, opt, topt, x, y, steps=15):
    for _ in range(steps):
        opt.zero_grad()
        out = model(x)
        model.backward(2 * (out - y) / out.size)
        opt.step()
        topt.zero_grad()
        torch.nn.functional.mse_loss(tmodel(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        topt.step()
    for (k, v), tv in zip(model.state_dict().items(), tmodel.state_dict().values(), strict=True):
        np.testing.assert_allclose(v, tv.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("opt_built", ["before", "after"])
def test_training_after_edits_like_torch(opt_built):
    """Edit, then train with Adam: an optimizer created after the edits trains every parameter;
    one created before keeps training the parameters it was given (torch's behaviour: the new
    layer stays as initialised) and follows them to the re-flattened storage."""
    rng = np.random.default_rng(0)
    (a, ta), (b, tb), (c, tc), (d, td) = (pair(4, 4, s) for s in range(4))
    s = nn.Sequential(a, nn.Tanh(), b)
    t = torch.nn.Sequential(ta, torch.nn.Tanh(), tb)
    if opt_built == "before":
        opt, topt = optim.Adam(s.parameters(), lr=1e-2), torch.optim.Adam(t.parameters(), lr=1e-2)
    s.append(nn.ReLU()).append(c)
    t.append(torch.nn.ReLU()).append(tc)
    s.insert(0, d)
    t.insert(0, td)
    del s[1]
    del t[1]
    s[0] = a
    t[0] = ta
    flat_ok(s)
    if opt_built == "after":
        opt, topt = optim.Adam(s.parameters(), lr=1e-2), torch.optim.Adam(t.parameters(), lr=1e-2)
    x = rng.standard_normal((8, 4)).astype(np.float32)
    y = rng.standard_normal((8, 4)).astype(np.float32)
    _train(s, t, opt, topt, x, y)


class Tower(nn.Module):
    def __init__(self, pairs):
        super().__init__()
        self.blocks = nn.ModuleList([m for m, _ in pairs])
        self.act = nn.Tanh()

    def forward(self, x):
        for blk in self.blocks:
            x = self.act_of(blk)(blk(x))
        return x

    def act_of(self, blk):
        return self._acts[id(blk)]


class TTower(torch.nn.Module):
    def __init__(self, pairs):
        super().__init__()
        self.blocks = torch.nn.ModuleList([t for _, t in pairs])

    def forward(self, x):
        for blk in self.blocks:
            x = torch.tanh(blk(x))
        return x


def test_modulelist_in_a_custom_module_trains_like_torch():
    """A Module whose forward loops over a ModuleList needs no backward (the chain of calls is
    recorded); keys 'blocks.0.weight', ...; an appended block trains too."""
    pairs = [pair(4, 4, s) for s in range(3)]
    model, tmodel = Tower(pairs), TTower(pairs)
    model._acts = {id(m): nn.Tanh() for m, _ in pairs}
    extra = pair(4, 4, 9)
    model.blocks.append(extra[0])
    tmodel.blocks.append(extra[1])
    model._acts[id(extra[0])] = nn.Tanh()
    assert list(model.state_dict()) == list(tmodel.state_dict())
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 4)).astype(np.float32)
    y = rng.standard_normal((8, 4)).astype(np.float32)
    _train(model, tmodel, optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
           torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9), x, y)


def test_modulelist_has_no_forward_and_torchs_repr():
    ml = nn.ModuleList([nn.ReLU(), nn.ReLU(), nn.Tanh()])
    tml = torch.nn.ModuleList([torch.nn.ReLU(), torch.nn.ReLU(), torch.nn.Tanh()])
    assert repr(ml) == repr(tml)
    assert repr(nn.ModuleList()) == repr(torch.nn.ModuleList()) == "ModuleList()"
    with pytest.raises(NotImplementedError, match='missing the required "forward" function'):
        ml(np.zeros((1, 2), np.float32))
    ml2 = ml + [nn.Sigmoid()]  # noqa: RUF005 (ModuleList.__add__ is under test)
    assert isinstance(ml2, nn.ModuleList) and len(ml2) == 4 and len(ml) == 3
    ml += [nn.Sigmoid()]
    assert len(ml) == 4
    with pytest.raises(TypeError, match=r"ModuleList\.extend should be called with an iterable"):
        nn.ModuleList(5)
