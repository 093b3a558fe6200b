"""Exact resume, end to end with the real layers and optimizer: N steps in one process versus
k steps, sg.save, then sg.load in a *fresh process* and N - k more steps must give bitwise
identical parameters (Dropout's RNG, BatchNorm statistics, Adam moments, the LR schedule and
the shuffled data order all carried by the checkpoint)."""

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
        extra = sg.load(ckpt, model, opt, sched, restore_rng=True)  # resuming: Dropout's RNG too
        h = sg.fit(model, loss_fn, opt, x, y, resume=extra, **kw)
    sd = model.state_dict()
    np.savez(out, loss=np.array(h.history.get("loss", [])), **{n: np.asarray(v) for n, v in sd.items()})
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
