"""steadygrad-bench CLI: usage errors exit 2 with one line, the JSON of a tiny real run has
every section, missing peers are reported as skipped. No timing is asserted, only that
real measurements came back (positive, finite)."""

from __future__ import annotations

import io
import json
import math
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import steadygrad as sg
from steadygrad import progress
from steadygrad.bench import cli, report, suite
from steadygrad.bench.models import CONFIGS
from steadygrad.bench.peers import available_cpus


def _usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2, f"{argv}: exit code {exc.value.code}"
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"{argv}: expected one line on stderr, got {err!r}"
    assert lines[0].startswith("steadygrad-bench: error: ")
    return lines[0]


def test_console_script_is_declared() -> None:
    eps = entry_points(group="console_scripts", name="steadygrad-bench")
    assert [ep.value for ep in eps] == ["steadygrad.bench.cli:main"]


@pytest.mark.parametrize("name, bad", [("gemmm", "gemmm"), ("training", "training"),
                                       ("All", "All"), ("memory-L", "memory-L"),
                                       ("gemm,optimm", "optimm"), ("train, ,x", "x")])
def test_unknown_suite_exits_2_listing_the_valid_ones(capsys: pytest.CaptureFixture[str],
                                                      name: str, bad: str) -> None:
    line = _usage_error(capsys, [name])
    assert repr(bad) in line and "choose from" in line
    assert line.endswith(f"(choose from {', '.join(suite.NAMES)}, all)")


def _suites(args: list[str]) -> list[str]:
    return cli._resolve_suites(cli.suite_names(args))


def test_suites_as_comma_lists() -> None:
    assert _suites(["gemm,optim"]) == ["gemm", "optim"]
    assert _suites(["train, memory", "gemm,train"]) == ["train", "memory", "gemm"]
    assert _suites(["all"]) == _suites([]) == list(suite.NAMES)


@pytest.mark.parametrize("argv", [[","], [" , ", ","]])
def test_a_comma_list_of_nothing_exits_2(capsys: pytest.CaptureFixture[str],
                                         argv: list[str]) -> None:
    assert "expected suite names" in _usage_error(capsys, argv)


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("name", suite.NAMES)
def test_suite_help_says_what_it_measures_and_how_long(
        capsys: pytest.CaptureFixture[str], name: str) -> None:
    assert cli.main([name, "--help"]) == 0
    text = capsys.readouterr().out
    assert cli.main(["-h", name]) == 0 and capsys.readouterr().out == text
    s = suite.load(name)
    assert text.startswith(f"usage: steadygrad-bench {name} ")
    assert _flat(s.about) in _flat(text)
    assert _flat(suite.REFERENCE_MACHINE) in _flat(text)
    quick, full = (len(s.cases(size)) for size in ("quick", "full"))
    assert f"--quick (default): {quick} case" in text and f"--full: {full} case" in text
    sizes = [ln for ln in text.splitlines() if re.match(r"--(quick \(default\)|full): \d+ case", ln)]
    for line, seconds in zip(sizes, s.durations, strict=True):
        assert line.endswith(f", {cli._about(seconds)}"), line
    if s.config_names:
        assert f"configurations (--configs): {', '.join(s.config_names)}" in text


def test_durations_read_as_about() -> None:
    assert [cli._about(s) for s in (10, 59, 60, 150, 210, 280)] == [
        "about 10 s", "about 59 s", "about 1 min", "about 2.5 min", "about 3.5 min",
        "about 4.5 min"]
    for name in suite.NAMES:  # quick is the smaller run of each suite
        quick, full = suite.load(name).durations
        assert 0 < quick <= full, name


def test_help_of_several_suites_and_of_the_tool(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["gemm,optim", "--help"]) == 0
    text = capsys.readouterr().out
    assert text.count("usage: steadygrad-bench ") == 2
    assert "steadygrad-bench gemm " in text and "steadygrad-bench optim " in text
    for argv in (["--help"], ["all", "-h"]):
        assert cli.main(argv) == 0
        text = capsys.readouterr().out
        assert text.startswith("usage: steadygrad-bench [-h] [--version]")
        for name in suite.NAMES:
            q, f = suite.load(name).durations
            assert f"  {name:<8} --quick {cli._about(q)}, --full {cli._about(f)}" in text
    with pytest.raises(SystemExit):  # an unknown suite is an error, with --help too
        cli.main(["gemmm", "--help"])


def test_version_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"steadygrad-bench (steadygrad {sg.__version__})"


def test_all_cannot_mix_with_suites(capsys: pytest.CaptureFixture[str]) -> None:
    assert "'all'" in _usage_error(capsys, ["all", "train"])


@pytest.mark.parametrize("threads", ["0", "-1", "abc", "1,x", "1.5", str(available_cpus() + 1)])
def test_bad_thread_count_exits_2(capsys: pytest.CaptureFixture[str], threads: str) -> None:
    assert "--threads" in _usage_error(capsys, ["train", "--threads", threads])


@pytest.mark.parametrize("argv", [["--compare", "tensorflow"], ["--repeat", "0"],
                                  ["--repeat", "two"], ["--quick", "--full"], ["--bogus"]])
def test_other_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    _usage_error(capsys, ["train", *argv])


@pytest.mark.parametrize("argv, words", [
    (["train", "--configs", "C1,C9"], ["'C9'", "'train'", "choose from", "C2"]),
    (["gemm", "--configs", "C1"], ["'gemm'", "no configurations"]),
    (["memory", "--configs", " , "], ["--configs", "expected"])])
def test_bad_configs_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str],
                            words: list[str]) -> None:
    line = _usage_error(capsys, argv)
    assert all(w in line for w in words), line


def test_configs_pick_the_suites_that_have_them() -> None:
    assert cli.resolve_configs("C2,C1,C2", ["gemm", "train", "memory"], explicit=False) == \
        (["train", "memory"], ["C2", "C1"])
    assert cli.resolve_configs(None, ["gemm"], explicit=True) == (["gemm"], None)


def _positive(x: object) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_tiny_run_json_structure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STEADYGRAD_BENCH_TINY", "1")
    out = tmp_path / "bench.json"
    assert cli.main(["train,memory", "--tiny", "--threads", "1", "--compare", "none",
                     "--json", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "ISA in use" in printed and "Training step" in printed and "Peak training" in printed
    data = json.loads(out.read_text())
    assert set(data) >= {"command", "machine", "options", "peers", "suites", "elapsed_s"}
    m = data["machine"]
    for key in ("cpu_model", "isa", "isa_supported", "versions", "blas", "env", "warnings"):
        assert key in m, key
    assert m["versions"]["steadygrad"] and m["versions"]["numpy"]
    assert data["options"]["threads"] == [1] and data["options"]["suites"] == ["train", "memory"]

    train = data["suites"]["train"]
    assert train["errors"] == [], train["errors"]
    row, bf16 = train["rows"]  # the precision axis: each config in fp32 and in bf16
    assert row["config"] == "T" and row["threads"] == 1 and row["precision"] == "fp32"
    assert bf16["config"] == "T bf16" and bf16["precision"] == "bf16"
    for r in (row, bf16):
        for key in ("steadygrad_ms", "steadygrad_best_ms", "steadygrad_samples_s",
                    "steadygrad_gflops"):
            assert _positive(r[key]), (key, r[key])
        assert r["steadygrad_best_ms"] <= r["steadygrad_ms"]
        assert r["steadygrad_ms"] in r["steadygrad_samples_ms"]
    assert bf16["bf16_path"] == sg.cpu_info()["bf16_path"]
    assert bf16["bf16_x"] == pytest.approx(row["steadygrad_ms"] / bf16["steadygrad_ms"])
    assert [c[0] for c in train["columns"]][:4] == ["config", "precision", "threads",
                                                    "steadygrad_ms"]

    mem = data["suites"]["memory"]
    assert mem["errors"] == [], mem["errors"]
    (mrow,) = mem["rows"]
    raw = mrow["steadygrad_raw"]
    assert raw["peak_bytes"] >= raw["baseline_bytes"] > 0
    assert mrow["steadygrad_mb"] == pytest.approx(raw["net_bytes"] / 2**20)
    assert mrow["predicted_mb"] > 0 and "prediction_error_pct" in mrow


def test_cnn_configs_run_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert cli.main(["train", "memory", "--tiny", "--configs", "CT", "--threads", "1",
                     "--compare", "none", "--json", str(out), "--no-progress"]) == 0
    assert "CNN GFLOP/s counts" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["options"]["configs"] == ["CT"]
    train, mem = data["suites"]["train"], data["suites"]["memory"]
    assert train["errors"] == [] and mem["errors"] == [], (train["errors"], mem["errors"])
    row, bf16 = train["rows"]
    assert bf16["config"] == "CT bf16" and bf16["shape"] == row["shape"]
    assert row["config"] == "CT" and row["shape"].startswith("batch 4, 3x8x8")
    assert row["gflop_per_step"] == pytest.approx(CONFIGS["CT"].batch * (
        6 * sum(CONFIGS["CT"].layer_macs) - 2 * CONFIGS["CT"].layer_macs[0]) / 1e9)
    assert _positive(row["steadygrad_gflops"]) and _positive(row["steadygrad_samples_s"])
    (mrow,) = mem["rows"]
    assert mrow["config"] == "CT" and mrow["predicted_mb"] > 0
    assert mrow["prediction_ratio"] == pytest.approx(mrow["predicted_mb"] / mrow["steadygrad_mb"])


def test_missing_peer_is_skipped_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    monkeypatch.setitem(sys.modules, "jax", None)  # `import jax` now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setenv("STEADYGRAD_BENCH_TINY", "1")
    out = tmp_path / "bench.json"
    assert cli.main(["train", "--tiny", "--threads", "1", "--compare", "torch,jax",
                     "--json", str(out), "--plot", str(tmp_path / "p.png"),
                     "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "skipped jax: jax not importable" in printed
    assert "plot skipped: matplotlib is not installed" in printed
    data = json.loads(out.read_text())
    assert data["peers"]["available"] == ["torch"]
    assert "jax" in data["peers"]["skipped"]
    train = data["suites"]["train"]
    assert "jax" in train["skipped"] and "jax_ms" not in train["rows"][0]
    row = train["rows"][0]
    assert _positive(row["torch_ms"])
    assert row["torch_x"] == pytest.approx(row["torch_ms"] / row["steadygrad_ms"])
    assert ["torch_x", "sg vs torch"] in train["columns"]
    (table_row,) = [ln for ln in printed.splitlines() if ln.split()[:2] == ["T", "fp32"]]
    assert table_row.endswith(report.ratio_cell(row["torch_x"]))  # the last column


def test_table_formats_ratios_and_missing_values() -> None:
    text = report.render_table([["name", "name"], ["ms", "ms"], ["torch_x", "torch/sg"]],
                               [{"name": "S", "ms": 0.3456, "torch_x": 2.5},
                                {"name": "M", "ms": None, "torch_x": None}], title="t")
    lines = text.splitlines()
    assert lines[0] == "t" and lines[1].split() == ["name", "ms", "torch/sg"]
    assert lines[3].split() == ["S", "0.346", "2.50x", "faster"]
    assert lines[4].split() == ["M", "-", "-"]
    mem = report.render_table([["name", "name"], ["torch_x", "sg vs torch"]],
                              [{"name": "S", "torch_x": 0.5}], sense="memory")
    assert mem.splitlines()[2].split() == ["S", "2.00x", "smaller"]


@pytest.mark.parametrize("value, sense, cell", [
    (2.5, "time", "2.50x faster"), (0.8, "time", "1.25x slower"), (1.0, "time", "1.00x faster"),
    (0.8, "memory", "1.25x smaller"), (1.1, "memory", "1.10x larger"),
    (math.nan, "time", "nan"), (math.inf, "memory", "inf")])
def test_ratio_cells_say_which_side_wins(value: float, sense: str, cell: str) -> None:
    assert report.ratio_cell(value, sense) == cell


def test_memory_tables_read_as_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    res = {"suite": "memory", "title": "m", "ratio_sense": "memory",
           "columns": [["config", "config"], suite.ratio_column("torch")],
           "rows": [{"config": "L", "torch_x": 0.4}]}
    report.print_suite(res)
    assert capsys.readouterr().out.splitlines()[-1].split() == ["L", "2.50x", "smaller"]


def test_simple_progress_bar_without_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "_tqdm", None)  # the one bar, sg.fit's, falls back
    buf = io.StringIO()
    bar = report.make_progress(True, file=buf)(4, "train")
    assert isinstance(bar, progress.SimpleBar)
    bar.update(2)
    assert "2/4" in buf.getvalue() and "#" * 15 in buf.getvalue()
    bar.set_postfix_str("M torch 2t")  # redrawn at once, as tqdm's refresh=True does
    assert buf.getvalue().rsplit("\r", 1)[1].endswith("2/4 M torch 2t")
    bar.close()  # a suite's bar leaves no line behind (tqdm's leave=False)
    assert buf.getvalue().endswith("\r") and not buf.getvalue().rsplit("\r", 2)[1].strip()


def test_plot_of_ratio_columns(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (optional)")
    res = {"train": {"columns": [["config", "config"], ["torch_x", "torch/sg"]],
                     "rows": [{"config": "S", "threads": 2, "torch_x": 2.0}]},
           "memory": {"columns": [["config", "config"]], "rows": [{"config": "S"}]}}
    out = tmp_path / "p.png"
    assert report.write_plot(str(out), res) is None
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.write_plot(str(tmp_path / "q.png"), {"memory": res["memory"]}) == \
        "no ratio columns to plot"
