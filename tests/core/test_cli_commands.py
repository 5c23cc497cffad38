"""`procseq data`, `procseq eval` and `procseq bench` end to end on tiny inputs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from procseq.cli import main


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "corpus"
    res = invoke("data", "make", "--out", out, "--per-domain", "3", "--test-per-domain", "2")
    assert res.exit_code == 0, res.output
    return out


def test_data_make_and_montage(corpus, tmp_path) -> None:
    assert {p.name for p in corpus.iterdir()} >= {"train", "test-seen", "test-compositional", "manifest.json"}
    assert invoke("data", "make", "--out", corpus).exit_code == 2  # exists: refuses
    res = invoke("data", "montage", "--out", tmp_path / "m.png")
    assert res.exit_code == 0 and (tmp_path / "m.png").is_file()


def test_eval_baselines_and_scoring_folders(corpus, tmp_path) -> None:
    res = invoke("eval", "--baseline", "ground-truth", "--data", corpus, "--split", "test-seen", "--n", "1",
                 "--out", tmp_path / "gt")
    assert res.exit_code == 0, res.output
    overall = json.loads((tmp_path / "gt" / "report.json").read_text())["summary"]["overall"]
    assert overall["attribute_acc"] == pytest.approx(1.0) and overall["step_acc"] == pytest.approx(1.0)
    res = invoke("eval", "--baseline", "retrieval", "--data", corpus, "--split", "test-compositional",
                 "--domains", "painting,lego", "--out", tmp_path / "ret")
    assert res.exit_code == 0, res.output
    assert "| painting |" in res.output and "| lego |" in res.output and "| emoji |" not in res.output
    res = invoke("eval", "--score", tmp_path / "gt", "--out", tmp_path / "rescored")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "rescored" / "report.md").read_text().count("1.000") >= 2


def test_eval_a_model(corpus, tiny_model_dir, tmp_path) -> None:
    res = invoke("eval", "--model", tiny_model_dir, "--data", corpus, "--split", "test-seen", "--n", "1",
                 "--steps", "1", "--out", tmp_path / "m")
    assert res.exit_code == 0, res.output
    folders = list((tmp_path / "m" / "sequences").iterdir())
    assert len(folders) == 2  # the micro model knows painting and lego only
    assert "spec" in json.loads((folders[0] / "sequence.json").read_text())


@pytest.mark.parametrize("args", [["--model", "x", "--baseline", "retrieval"], []])
def test_eval_needs_exactly_one_source(tmp_path, args) -> None:
    res = invoke("eval", *args, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "exactly one" in res.output and not (tmp_path / "o").exists()


def test_bench(tiny_model_dir, tmp_path) -> None:
    res = invoke("bench", "--model", tiny_model_dir, "--runs", "2", "--steps", "2", "--frames", "4",
                 "--json-out", tmp_path / "b.json")
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "b.json").read_text())
    assert record["runs"] == 2 and record["min_s"] <= record["median_s"] <= record["max_s"]
    assert record["peak_rss_mb"] > 0 and record["achieved_tflops"] > 0 and record["peak_tflops"] > 0
    assert record["transformer_tflop_per_generation"] > 0
    assert 0 < record["transformer_cpu_s_per_generation"] <= record["median_cpu_s"]  # CPU seconds beside wall time
    assert record["achieved_tflops_per_core"] > 0 and record["peak_tflops_per_core"] > 0
    assert 0 < record["matmul_share_per_core"] < 2  # measured run by run against the peak timed right after
    assert invoke("bench", "--model", tiny_model_dir, "--runs", "0").exit_code == 2


def test_samples(corpus, tiny_model_dir, tmp_path) -> None:
    res = invoke("samples", "--model", tiny_model_dir, "--data", corpus, "--out", tmp_path / "s.png")
    assert res.exit_code == 0, res.output
    from PIL import Image

    with Image.open(tmp_path / "s.png") as im:  # painting + lego, each with its truth row
        assert im.height == 4 * (32 + 4) + 4
    res = invoke("samples", "--model", tiny_model_dir, "--data", corpus, "--index", "99", "--out", tmp_path / "t.png")
    assert res.exit_code == 2 and "no record 99" in res.output
