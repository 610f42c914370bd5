"""The gate's parameters and its kept history are untrusted input: every malformed file is
refused with exit 2 and one line naming the file, the key and the cause, before anything is
read or written; ``--suggest`` leaves out and names the runs it cannot read."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from lakehouse.cli import main
from lakehouse.quality import SuiteError
from lakehouse.quality import parameters as gate_parameters
from lakehouse.warehouse import project_dir

PROJECT = project_dir(Path(__file__).parent)
EXPECTATIONS = PROJECT / "expectations"


def _known() -> set[str]:
    """The parameter names the repository's suites use."""
    from lakehouse.quality.suites import load_suites

    return {n for s in load_suites(EXPECTATIONS, None) for n in s.parameter_names}


def _load(tmp_path: Path, text: str) -> gate_parameters.Parameters:
    extra = tmp_path / "gate.yml"
    extra.write_text(text)
    return gate_parameters.load(EXPECTATIONS, None, extra, known=_known())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("training_min_rows: " + "9" * 5000 + "\n", "has too many digits"),
        ("training_min_rows: .nan\n", "training_min_rows must be a finite number, not nan"),
        ("training_mean_likes_7d_max: -.inf\n", "must be a finite number, not -inf"),
        ("training_min_rows: 1.0e+300\n", "training_min_rows is 1e+300, beyond"),
        ("training_min_rows: 1\ntraining_min_rows: 2\n", "'training_min_rows' is given twice"),
        ("training_min_row: 10\n", "'training_min_row' is not a parameter of any suite (did you "
                                   "mean 'training_min_rows'?)"),
        ("training_min_rows: [1, 2]\n", "training_min_rows must be a number, not [1, 2]"),
        ("training_min_rows: yes\n", "training_min_rows must be a number, not True"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("training_min_rows: !!python/object:os.system 1\n", "cannot read gate parameters"),
        ("as_of: 2026-01-01\n", "'as_of' is set by the gate at run time"),
    ],
)  # fmt: skip
def test_a_malformed_parameters_file_is_refused_naming_file_key_and_cause(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(SuiteError) as raised:
        _load(tmp_path, text)
    said = str(raised.value)
    assert message in said and str(tmp_path / "gate.yml") in said
    assert "\n" not in said and len(said) < 500


def test_a_good_file_still_loads(tmp_path: Path) -> None:
    loaded = _load(tmp_path, "training_min_rows: 50\ntraining_mean_likes_7d_max: 2.5\n")
    assert loaded.values["training_min_rows"] == 50
    assert loaded.values["training_mean_likes_7d_max"] == 2.5


def test_a_huge_file_is_refused_quickly(tmp_path: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(SuiteError, match="too big for gate parameters"):
        _load(tmp_path, "".join(f"p{i}: {i}\n" for i in range(300_000)))
    assert time.perf_counter() - started < 5  # not 112 s: the size is checked before parsing


def test_the_repos_own_parameters_name_only_what_the_suites_use() -> None:
    known = _known()
    for env in (None, "prod"):
        assert gate_parameters.load(EXPECTATIONS, env, known=known).values


def test_the_cli_exits_2_with_one_line_and_keeps_the_previous_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "quality"
    out.mkdir()
    (out / "result.json").write_text('{"kept": true}')
    bad = tmp_path / "gate.yml"
    bad.write_text("training_min_rows: .nan\n")
    code = main(
        [
            "validate", "--lake", str(tmp_path / "lake"), "--warehouse", str(tmp_path / "w.duckdb"),
            "--out", str(out), "--parameters", str(bad), "--as-of", "2026-11-01T06:00:00Z",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "training_min_rows must be a finite number" in " ".join(err.split())
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["result.json"]
    assert (out / "result.json").read_text() == '{"kept": true}'


def _kept_run(out: Path, name: str, observed, *, result_name: str | None = "mean") -> None:
    run = out / "runs" / name
    run.mkdir(parents=True)
    result = {
        "type": "expect_column_mean_to_be_between",
        "observed_value": observed,
        "parameters": {"max_value": "training_mean_likes_7d_max"},
    }
    if result_name is not None:
        result["name"] = result_name
    data = {"tables": [{"table": "photo_popularity_training", "results": [result]}]}
    (run / "result.json").write_text(json.dumps(data))


def test_suggest_names_and_skips_malformed_runs_and_counts_only_those_it_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lakehouse.quality import suggest

    out = tmp_path / "quality"
    _kept_run(out, "1", 4.0)
    _kept_run(out, "2", 6.0)
    _kept_run(out, "3", 9.0, result_name=None)  # a result without its name: not the gate's
    _kept_run(out, "4", float("nan"))  # NaN observed: no observation
    (out / "runs" / "5").mkdir()
    (out / "runs" / "5" / "result.json").write_text("{not json")
    skipped: list[str] = []
    found, _ = suggest(out, project=PROJECT, skipped=skipped)
    (mean,) = found
    assert mean.runs == 2 and (mean.observed_min, mean.observed_max) == (4.0, 6.0)
    assert [line.split(":")[0] for line in skipped] == [
        str(out / "runs" / "3" / "result.json"),
        str(out / "runs" / "5" / "result.json"),
    ]
    code = main(["validate", "--suggest", "--out", str(out)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 0 and err.count("skipped") == 2 and "KeyError" in err
    shutil.rmtree(out)
