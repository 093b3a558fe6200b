"""fit's final partial batch: drop_last=True drops it (as torch's DataLoader); by default a
final batch of 1 sample is dropped only when a BatchNorm would see it in training mode (where
it cannot normalise; torch raises), with one DroppedBatchWarning per fit; the dropped samples
are counted honestly (loss means, samples/s, history, progress)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from train_fakes import blobs

from steadygrad import nn, optim, progress
from steadygrad.callbacks import Callback
from steadygrad.random import manual_seed
from steadygrad.training import DroppedBatchWarning, fit


class Sizes(Callback):
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def on_batch_end(self, step: int, logs: dict[str, float]) -> None:
        self.sizes.append(int(logs["size"]))


def _model(bn: bool = True, seed: int = 0) -> nn.Sequential:
    manual_seed(seed)
    mid = [nn.BatchNorm1d(16)] if bn else []
    return nn.Sequential(nn.Linear(8, 16), *mid, nn.ReLU(), nn.Linear(16, 3))


def _fit(model, n, batch_size, **kw):
    x, y = blobs(n)
    spy = Sizes()
    opt = optim.SGD(model.parameters(), lr=0.05)
    kw = {"epochs": 2, "verbose": 0, "seed": 0, **kw}
    h = fit(model, nn.CrossEntropyLoss(), opt, x, y, batch_size=batch_size, callbacks=[spy], **kw)
    return h, spy.sizes


def test_batchnorm_and_a_last_batch_of_one_drops_it_with_one_warning():
    with pytest.warns(DroppedBatchWarning) as rec:
        h, sizes = _fit(_model(), 33, 8)  # 4 batches of 8 and 1 sample left over
    assert len(rec) == 1  # once per fit call, not per epoch
    msg = str(rec[0].message)
    assert "BatchNorm1d at '1'" in msg and "1 of 33 samples" in msg and "drop_last=True" in msg
    assert rec[0].filename == __file__  # points at the fit call
    assert sizes == [8] * 8
    assert h["dropped_samples"] == [1.0, 1.0]
    assert h.fit_state["global_step"] == 8


def test_the_dropped_sample_differs_each_epoch_and_the_loss_mean_counts_only_trained_ones():
    seen, losses = [], []

    class Rec(nn.MSELoss):
        def __call__(self, p, t):
            seen.append(t[:, 0].astype(int))  # each target row holds its sample's index
            return super().__call__(p, t)

    class Losses(Callback):
        def on_batch_end(self, step, logs):
            losses.append((logs["loss"], logs["size"]))

    x, _ = blobs(33)
    y = np.repeat(np.arange(33, dtype=np.float32)[:, None], 3, axis=1)
    model = _model()
    opt = optim.SGD(model.parameters(), lr=1e-4)
    with pytest.warns(DroppedBatchWarning):
        h = fit(model, Rec(), opt, x, y, epochs=3, batch_size=8, seed=1, verbose=0,
                callbacks=[Losses()])
    trained = seen[1:]  # seen[0]: fit's check that the loss accepts the targets
    assert [len(t) for t in trained] == [8] * 12
    order = np.random.Generator(np.random.PCG64(1))  # fit's shuffle generator for seed=1
    left_out = []
    for e in range(3):
        ids = np.concatenate(trained[4 * e : 4 * e + 4])
        perm = order.permutation(33)
        np.testing.assert_array_equal(ids, perm[:32])
        left_out.append(int(perm[32]))
        mean = sum(loss * size for loss, size in losses[4 * e : 4 * e + 4]) / 32
        assert h["loss"][e] == pytest.approx(mean, rel=1e-12)  # over the 32 trained, not 33
    assert len(set(left_out)) == 3  # a different sample each epoch (for this seed)


def test_drop_last_drops_any_partial_batch_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h, sizes = _fit(_model(bn=False), 30, 8, drop_last=True)
    assert sizes == [8] * 6
    assert h["dropped_samples"] == [6.0, 6.0]
    assert h["samples_per_s"][0] > 0 and h.fit_state["global_step"] == 6


def test_without_batchnorm_a_last_batch_of_one_is_trained_on_as_torch_does():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h, sizes = _fit(_model(bn=False), 33, 8)
    assert sizes == [8, 8, 8, 8, 1] * 2
    assert "dropped_samples" not in h


def test_batchnorm_in_eval_mode_inside_a_training_model_does_not_drop():
    class FrozenBN(nn.Sequential):
        def train(self, mode=True):
            super().train(mode)
            self[1].eval()  # running statistics frozen: a batch of 1 is fine
            return self

    manual_seed(0)
    model = FrozenBN(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, sizes = _fit(model, 17, 8, epochs=1)
    assert sizes == [8, 8, 1]


def test_other_remainders_with_batchnorm_are_kept():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, sizes = _fit(_model(), 34, 8, epochs=1)
    assert sizes == [8, 8, 8, 8, 2]


def _state(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("n,batch_size,kw,match", [
    (40, 1, {}, r"fit: batch_size=1, but BatchNorm1d at '1' needs more than 1 sample per batch"),
    (1, 8, {}, r"fit: x has 1 sample\(s\) and BatchNorm needs more than 1: no batch left"),
    (5, 8, {"drop_last": True}, r"fit: x has 5 sample\(s\) and drop_last=True and batch_size=8"),
])
def test_no_batch_left_to_train_on_is_refused_before_anything_changes(n, batch_size, kw, match):
    model = _model()
    before = _state(model)
    with pytest.raises(ValueError, match=match):
        _fit(model, n, batch_size, **kw)
    after = _state(model)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)


def test_progress_shows_the_batches_run_and_the_dropped_samples(capsys, monkeypatch):
    monkeypatch.setattr(progress, "_tqdm", None)
    with pytest.warns(DroppedBatchWarning):
        _fit(_model(), 33, 8, epochs=1, verbose=1)
    err = capsys.readouterr().err
    assert "4/4" in err and "dropped 1 sample" in err
    with pytest.warns(DroppedBatchWarning):
        _fit(_model(), 33, 8, epochs=1, verbose=2)
    assert capsys.readouterr().err.rstrip().endswith("samples/s - dropped 1 sample")


def test_resume_after_a_drop_continues_the_same_batches():
    straight, sizes = None, None
    with pytest.warns(DroppedBatchWarning):
        straight, sizes = _fit(_model(), 33, 8, epochs=3)
    model = _model()
    with pytest.warns(DroppedBatchWarning):
        part, _ = _fit(model, 33, 8, epochs=3, max_steps=5)
    with pytest.warns(DroppedBatchWarning):
        rest, more = _fit(model, 33, 8, epochs=3, resume=part.fit_state)
    assert len(more) == 3 * 4 - 5 and math.isclose(rest["loss"][-1], straight["loss"][-1], rel_tol=0)
    assert sizes == [8] * 12


def test_any_layer_that_declares_it_normalizes_over_the_batch_is_guarded():
    """The batch-of-one guard reads what a layer declares (BatchNorm1d's normalizes_over_batch),
    not its class name: a subclass under another name, or any layer declaring it, is covered."""

    class Whitening(nn.BatchNorm1d):
        pass

    class BatchStat(nn.Identity):
        normalizes_over_batch = True

    for mid in (Whitening(16), BatchStat()):
        model = nn.Sequential(nn.Linear(8, 16), mid, nn.ReLU(), nn.Linear(16, 3))
        with pytest.raises(ValueError, match=rf"batch_size=1, but {type(mid).__name__} at '1'"):
            _fit(model, 40, 1)
        with pytest.warns(DroppedBatchWarning, match=f"{type(mid).__name__} at '1'"):
            _, sizes = _fit(model, 33, 8)
        assert sizes == [8] * 8
