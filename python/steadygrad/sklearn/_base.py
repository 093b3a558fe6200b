"""What MLPClassifier and MLPRegressor share: scikit-learn's MLP parameters and their checks,
and the fit that trains a steadygrad network with `sg.fit`, keeping scikit-learn's
semantics: alpha's L2 term (0.5 * alpha * ||W||^2 / batch size in each batch's loss, its
gradient alpha * W / batch size, weights only), loss_ as the epoch's mean batch loss,
convergence by tol / n_iter_no_change on the training loss or the validation score, the
learning-rate schedules of 'sgd', warm_start and partial_fit."""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

import steadygrad as sg
from steadygrad import _core, nn, optim
from steadygrad._threads import threads
from steadygrad.callbacks import Callback
from steadygrad.sklearn import _network as net


class _Epochs(Callback):
    """sg.fit's hook into scikit-learn's epoch: before each batch it sets the weights' decay
    to alpha / batch size (sklearn's gradient term) and adds the batch's L2 term to the
    epoch's loss; at each epoch end the estimator books the iteration and may stop the fit."""

    def __init__(self, est: BaseMLP, score_data: tuple[np.ndarray, Any] | None,
                 incremental: bool) -> None:
        self.est, self.score_data, self.incremental = est, score_data, incremental
        self.weights = [lin.weight for lin in net.linears(est.model_)]
        self.penalty = 0.0
        self._norms: tuple[Any, ...] | None = None  # (flat values, offsets, lengths, out)

    def on_epoch_begin(self, epoch: int) -> None:
        self.penalty = 0.0

    def on_batch_begin(self, step: int) -> None:
        run, alpha = self.loop.run, float(self.est.alpha)
        n_batch = min(run.batch_size, run.n_used - self.loop.state.batch * run.batch_size)
        group = self.loop.optimizer.param_groups[0]
        if group["weight_decay"] != alpha / n_batch:
            group["weight_decay"] = alpha / n_batch
        if alpha:  # this batch's 0.5 * alpha * ||W||^2 / n_batch, weighted by n_batch
            self.penalty += 0.5 * alpha * self._squared_norm()

    def _squared_norm(self) -> float:
        """sum ||W||^2 over the weight matrices, accumulated in float64: one deterministic
        norm pass over their segments of the flat parameter buffer (the optimizer's), no
        copy (a float64 copy of every weight per batch was a tenth of a digits step)."""
        ws = self.weights
        store = ws[0].storage
        if any(p.storage is not store for p in ws):  # not one buffer: per matrix
            return sum(float(np.dot(w, w)) for w in
                       (p.data.ravel().astype(np.float64) for p in ws))
        if self._norms is None or self._norms[0] is not store.data:
            off = np.array([p.offset for p in ws], np.int64)
            ln = np.array([p.size for p in ws], np.int64)
            self._norms = (store.data, off, ln, np.empty(len(ws), np.float64))
        data, off, ln, out = self._norms
        _, per = _core.grad_norms(data, off, ln, 2.0, out)
        return float(np.dot(per, per))

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        loss = logs["loss"] + self.penalty / self.loop.run.n_used
        if self.est._end_iteration(loss, self.loop.run.n_used, self.score_data, self.incremental):
            self.loop.stop_training = True


class BaseMLP(BaseEstimator):
    """The shared body of MLPClassifier and MLPRegressor (see their docstrings)."""

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(net.ACTIVATIONS))],
        "solver": [StrOptions({"adam", "sgd"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "batch_norm": ["boolean"],
        "max_grad_norm": [None, Interval(Real, 0, None, closed="neither")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "n_threads": [None, Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *, solver: str = "adam",
        alpha: float = 1e-4, batch_size: int | str = "auto", learning_rate: str = "constant",
        learning_rate_init: float = 1e-3, power_t: float = 0.5, max_iter: int = 200,
        shuffle: bool = True, random_state: Any = None, tol: float = 1e-4, verbose: bool = False,
        warm_start: bool = False, momentum: float = 0.9, nesterovs_momentum: bool = True,
        early_stopping: bool = False, validation_fraction: float = 0.1, beta_1: float = 0.9,
        beta_2: float = 0.999, epsilon: float = 1e-8, n_iter_no_change: int = 10,
        batch_norm: bool = False, max_grad_norm: float | None = None, dropout: float = 0.0,
        n_threads: int | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.batch_norm = batch_norm
        self.max_grad_norm = max_grad_norm
        self.dropout = dropout
        self.n_threads = n_threads

    # -- what a subclass supplies ---------------------------------------------------------
    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        """(float32 X, 2-d targets as scikit-learn's MLP trains on them)."""
        raise NotImplementedError

    def _out_activation(self) -> str:
        raise NotImplementedError

    def _score(self, X: np.ndarray, y: Any) -> float:
        """The early-stopping score on checked data (accuracy, R^2); NaN for non-finite output."""
        raise NotImplementedError

    # -- fitted attributes read from the network --------------------------------------------
    @property
    def coefs_(self) -> list[np.ndarray]:
        """Each Linear layer's weight, a copy in scikit-learn's (in, out) layout."""
        return net.coefs(self.model_)

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Each Linear layer's bias (a copy)."""
        return net.intercepts(self.model_)

    @property
    def n_layers_(self) -> int:
        """Number of layers, input and output included (scikit-learn's count)."""
        return len(self.coefs_) + 1

    # -- training -----------------------------------------------------------------------
    def _check_params(self) -> list[int]:
        if self.solver == "lbfgs":
            raise ValueError("solver='lbfgs' is not supported by steadygrad.sklearn (it trains with "
                             "mini-batches): use solver='adam' or solver='sgd'")
        self._validate_params()
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}")
        return [int(s) for s in sizes]

    def _initialize(self, units: list[int], rs: np.random.RandomState) -> None:
        self.n_iter_ = 0
        self.t_ = 0
        self.out_activation_ = self._out_activation()
        self.model_ = net.build(units, self.activation, self.batch_norm, float(self.dropout), rs)
        self._optimizer: Any = None
        self.loss_curve_: list[float] = []
        self._no_improvement_count = 0
        self.best_loss_: float | None
        self.validation_scores_: list[float] | None
        self.best_validation_score_: float | None
        if self.early_stopping:
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
        else:
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = None, None, np.inf

    def _new_optimizer(self) -> Any:
        groups = net.param_groups(self.model_)
        clip = None if self.max_grad_norm is None else float(self.max_grad_norm)
        if self.solver == "adam":
            return optim.Adam(groups, lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2),
                              eps=self.epsilon, max_grad_norm=clip)
        return optim.SGD(groups, lr=self.learning_rate_init, momentum=self.momentum,
                         nesterov=bool(self.nesterovs_momentum and self.momentum > 0),
                         max_grad_norm=clip)

    def _loss(self) -> Any:
        k = self.n_outputs_
        if self.out_activation_ == "softmax":
            return nn.CrossEntropyLoss()
        if self.out_activation_ == "logistic":  # binary log loss: summed over the outputs
            return net.ScaledLoss(nn.BCEWithLogitsLoss(), k, k)
        return net.ScaledLoss(nn.MSELoss(), 0.5, 0.5 * k)  # 0.5 * mean; gradient (pred - y) / n

    def _targets(self, Y: np.ndarray) -> np.ndarray:
        if self.out_activation_ == "softmax":
            return np.asarray(Y.argmax(axis=1), dtype=np.int64)
        return np.ascontiguousarray(Y, dtype=np.float32)

    def _fit(self, X: Any, y: Any, incremental: bool = False) -> BaseMLP:
        hidden = self._check_params()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)
        rs = check_random_state(self.random_state)
        if first_pass:
            self.n_outputs_ = Y.shape[1]
            self._initialize([X.shape[1], *hidden, Y.shape[1]], rs)
        elif Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {Y.shape[1]} outputs but this estimator was fitted with "
                             f"{self.n_outputs_}; fit it anew (warm_start=False)")
        if self._optimizer is None or not incremental:
            self._optimizer = self._new_optimizer()
        score_data = None
        if self.early_stopping:
            stratify = Y if is_classifier(self) and self.n_outputs_ == 1 else None
            X, X_val, Y, Y_val = train_test_split(X, Y, random_state=rs, test_size=self.validation_fraction,
                                                  stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                 "or the size of your dataset.")
            score_data = (X_val, self._val_targets(Y_val))
            self._best_state = self.model_.state_dict()
        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going "
                              "to be clipped", stacklevel=3)
            batch_size = int(np.clip(self.batch_size, 1, n))
        self.n_iter_ = 0
        cb = _Epochs(self, score_data, incremental)
        with threads(self.n_threads):
            sg.fit(self.model_, self._loss(), self._optimizer, X, self._targets(Y),
                   epochs=1 if incremental else int(self.max_iter), batch_size=batch_size,
                   shuffle=bool(self.shuffle), seed=int(rs.randint(0, 2**31 - 1)), metrics=[],
                   verbose=0, callbacks=[cb])
        if self.early_stopping:
            self.model_.load_state_dict(self._best_state)
        if not all(np.isfinite(p.data).all() for p in self.model_.parameters()):
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.")
        return self

    def _val_targets(self, Y_val: np.ndarray) -> Any:
        return Y_val

    def _end_iteration(self, loss: float, n_samples: int, score_data: tuple[np.ndarray, Any] | None,
                       incremental: bool) -> bool:
        """scikit-learn's bookkeeping after an epoch; True when training should stop."""
        self.n_iter_ += 1
        self.loss_ = loss
        self.t_ += n_samples
        self.loss_curve_.append(loss)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
        self._update_no_improvement_count(score_data)
        groups = self._optimizer.param_groups
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            for g in groups:
                g["lr"] = float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
        if self._no_improvement_count > self.n_iter_no_change:
            what = "Validation score" if score_data is not None else "Training loss"
            msg = (f"{what} did not improve more than tol={self.tol:f} for "
                   f"{self.n_iter_no_change} consecutive epochs.")
            if self.solver != "sgd" or self.learning_rate != "adaptive" or groups[0]["lr"] <= 1e-6:
                if self.verbose:
                    print(msg + " Stopping.")
                return True
            for g in groups:
                g["lr"] /= 5.0
            if self.verbose:
                print(msg + f" Setting learning rate to {groups[0]['lr']:f}")
            self._no_improvement_count = 0
        if not incremental and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and "
                          "the optimization hasn't converged yet.", ConvergenceWarning, stacklevel=2)
        return False

    def _update_no_improvement_count(self, score_data: tuple[np.ndarray, Any] | None) -> None:
        if score_data is not None:
            assert self.validation_scores_ is not None and self.best_validation_score_ is not None
            score = self._score(*score_data)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            self._no_improvement_count = (self._no_improvement_count + 1
                                          if score < self.best_validation_score_ + self.tol else 0)
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_state = self.model_.state_dict()
        else:
            assert self.best_loss_ is not None
            last = self.loss_curve_[-1]
            self._no_improvement_count = self._no_improvement_count + 1 if last > self.best_loss_ - self.tol else 0
            self.best_loss_ = min(self.best_loss_, last)

    # -- prediction -------------------------------------------------------------------------
    def _forward(self, X: Any, check_input: bool = True) -> np.ndarray:
        """The output activation of the network's eval-mode forward, in float64, (n, outputs)."""
        if check_input:
            check_is_fitted(self)
            X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        with threads(self.n_threads):
            z = sg.predict(self.model_, np.ascontiguousarray(X, dtype=np.float32)).astype(np.float64)
        if self.out_activation_ == "softmax":
            z = np.exp(z - z.max(axis=1, keepdims=True))
            return np.asarray(z / z.sum(axis=1, keepdims=True))
        if self.out_activation_ == "logistic":
            return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)))  # 1 / (1 + exp(-z)), overflow-free
        return z

    # -- pickling: the optimizer is rebuilt over the unpickled network ---------------------
    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = super().__getstate__()
        state = dict(state)
        opt = state.pop("_optimizer", None)
        if opt is not None:
            state["_optimizer_state"] = opt.state_dict()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        opt_state = state.pop("_optimizer_state", None)
        super().__setstate__(state)
        if "model_" in state:
            self._optimizer = None
            if opt_state is not None:
                self._optimizer = self._new_optimizer()
                self._optimizer.load_state_dict(opt_state)
