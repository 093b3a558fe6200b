"""scikit-learn estimators trained by steadygrad: `MLPClassifier` and `MLPRegressor`, with
scikit-learn's MLP parameters, attributes and semantics, for Pipeline, GridSearchCV and
cross_val_score. scikit-learn is an optional dependency: `pip install scikit-learn`.

    from steadygrad.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=50, random_state=0).fit(X, y)
    clf.predict_proba(X_test)
"""

from __future__ import annotations

try:
    import sklearn  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised by a test that hides sklearn
    raise ImportError("steadygrad.sklearn needs scikit-learn: pip install scikit-learn") from e

from steadygrad.sklearn.estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
