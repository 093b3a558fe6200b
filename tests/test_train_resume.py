"""Exact resume, end to end with the real layers and optimizer: N steps in one process versus
k steps, sg.save, then sg.load in a *fresh process* and N - k more steps must give bitwise
identical parameters (Dropout's RNG, BatchNorm statistics, Adam moments, the LR schedule and
the shuffled data order all carried by the checkpoint; fit(resume=path) restores sg's RNG), and
the same History: epoch rows, their step positions and every step's loss, lr and norm."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import steadygrad as sg
    from steadygrad import nn, optim

    mode, ckpt, out, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    sg.set_num_threads(int(sys.argv[5]))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 12)).astype(np.float32)
    y = (x[:, :4].argmax(1)).astype(np.int64)

    sg.manual_seed(123)
    model = nn.Sequential(nn.Linear(12, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3),
                          nn.Linear(32, 4))
    opt = optim.AdamW(model.parameters(), lr=1e-2, max_grad_norm=0.5)
    sched = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.8)
    kw = dict(epochs=4, batch_size=32, validation_data=(x[:64], y[:64]), scheduler=sched,
              seed=7, verbose=0)
    loss_fn = nn.CrossEntropyLoss()
    if mode == "straight":
        h = sg.fit(model, loss_fn, opt, x, y, **kw)
    elif mode == "first":
        h = sg.fit(model, loss_fn, opt, x, y, max_steps=k, **kw)
        sg.save(ckpt, model, opt, sched, extra={"fit": h.fit_state})
    else:
        sg.manual_seed(999)  # a different RNG state: the checkpoint must bring the right one back
        h = sg.fit(model, loss_fn, opt, x, y, resume=ckpt, **kw)  # fit restores sg's RNG too
    sd = model.state_dict()
    np.savez(out, loss=np.array(h.history.get("loss", [])), epoch_step=np.array(h.epoch_step),
             **{f"step_{k}": np.array(v) for k, v in h.steps.items()},
             **{n: np.asarray(v) for n, v in sd.items()})
    """
)


def _run(tmp_path, mode, k, threads=2):
    out = tmp_path / f"{mode}-{k}-{threads}.npz"
    subprocess.run([sys.executable, "-c", SCRIPT, mode, str(tmp_path / "c.safetensors"), str(out),
                    str(k), str(threads)], check=True, timeout=120)
    return dict(np.load(out))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("straight"), "straight", 0)


@pytest.mark.parametrize("k", [5, 10, 23])  # mid-epoch, at an epoch boundary (10/epoch), later
def test_resume_in_a_fresh_process_is_bitwise_identical(tmp_path, straight, k):
    _run(tmp_path, "first", k)
    resumed = _run(tmp_path, "second", k, threads=1)  # and the thread count does not matter
    assert straight.keys() == resumed.keys()
    for name in straight:
        np.testing.assert_array_equal(resumed[name], straight[name], err_msg=f"{name} after resume at {k}")


def test_resume_from_a_path_asks_load_to_restore_the_rng(tmp_path, monkeypatch):
    """sg.load restores sg's RNG only when asked (restore_rng=True); resuming a fit asks."""
    import steadygrad as sg
    from steadygrad import checkpoint, nn, optim

    x = np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    sg.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    opt = optim.SGD(model.parameters(), lr=0.1)
    kw = dict(epochs=2, batch_size=8, seed=3, verbose=0, max_steps=3)
    h = sg.fit(model, nn.CrossEntropyLoss(), opt, x, y, **kw)
    path = tmp_path / "c.safetensors"
    sg.save(path, model, opt, extra={"fit": h.fit_state})
    calls = []
    real_load = checkpoint.load

    def load(path, model, optimizer=None, scheduler=None, restore_rng=False):
        calls.append(restore_rng)
        return real_load(path, model, optimizer, scheduler)

    monkeypatch.setattr(checkpoint, "load", load)
    sg.manual_seed(999)
    sg.fit(model, nn.CrossEntropyLoss(), opt, x, y, resume=path, **kw)  # max_steps: no step left
    assert calls == [True]  # the fresh-process test above checks the restored RNG end to end


def test_resume_reads_a_fit_state_saved_before_the_metrics_registry() -> None:
    """A mid-epoch fit state written before metrics had a registry holds the epoch's accuracy
    sum as acc["correct"]: resuming it must count that sum, as a state of today's format does."""
    import steadygrad as sg
    from steadygrad import nn, optim

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6)).astype(np.float32)
    y = x[:, :3].argmax(1).astype(np.int64)

    def accuracy(legacy: bool) -> list[float]:
        sg.manual_seed(5)
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
        opt = optim.SGD(model.parameters(), lr=0.1)
        kw = dict(epochs=1, batch_size=8, seed=1, verbose=0)
        state = sg.fit(model, nn.CrossEntropyLoss(), opt, x, y, max_steps=5, **kw).fit_state
        assert state["acc"]["metric:accuracy"] > 0
        if legacy:
            state["acc"]["correct"] = state["acc"].pop("metric:accuracy")
        return list(sg.fit(model, nn.CrossEntropyLoss(), opt, x, y, resume=state, **kw)
                    .history["accuracy"])

    assert accuracy(legacy=True) == accuracy(legacy=False)
