"""Thin wrapper: `python benchmarks/bench_sklearn.py [options]` = `steadygrad-bench sklearn [options]`
(steadygrad.sklearn's MLPClassifier against scikit-learn's: fit time and test accuracy on
digits, breast_cancer and a 100k-row make_classification; --quick (default) or --full)."""

from __future__ import annotations

import sys

from steadygrad.bench.cli import main

if __name__ == "__main__":
    sys.exit(main(["sklearn", *sys.argv[1:]]))
