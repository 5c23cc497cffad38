"""The harness end to end on a real (tiny) synthetic corpus written by procseq.data.dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

dataset = pytest.importorskip("procseq.data.dataset")

from procseq.eval.baselines import RetrievalBaseline, run_ground_truth, run_retrieval  # noqa: E402
from procseq.eval.report import compare_markdown  # noqa: E402
from procseq.eval.scorer import score_folders  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "c"
    dataset.make_corpus(out, per_domain=3, test_per_domain=1, adapter_sizes={"clay": 2, "sand_art": 1},
                        progress=False)
    return out


def test_ground_truth_and_retrieval_on_the_corpus(corpus: Path, tmp_path: Path):
    train = dataset.load_split(corpus, "train")
    test = dataset.load_split(corpus, "test-seen")
    gt = run_ground_truth(test, tmp_path / "gt", progress=False)
    domains = {r["domain"] for r in test}
    assert set(gt.summary["domains"]) == domains
    for summary in gt.summary["domains"].values():
        assert summary["attribute_acc"] >= 0.99 and summary["step_acc"] >= 0.99
    assert sorted(p.name for p in (tmp_path / "gt" / "sequences").iterdir()) == sorted(r["id"] for r in test)

    retrieval = RetrievalBaseline(train)
    trained = [r for r in test if any(t["domain"] == r["domain"] for t in train)]
    for r in trained:
        assert retrieval.nearest(r["prompt"], r["domain"])["domain"] == r["domain"]
    ret = run_retrieval(train, test, tmp_path / "ret", progress=False, cross_domain_fallback=True)
    assert ret.summary["overall"]["n"] == len(test)
    assert ret.summary["overall"]["attribute_acc"] < gt.summary["overall"]["attribute_acc"]
    again = score_folders(tmp_path / "ret").summary["overall"]  # same scorer, folder order (sorted ids)
    assert again == pytest.approx(ret.summary["overall"])

    table = compare_markdown({"ground truth": gt, "retrieval": ret})
    for domain in domains:
        assert f"| {domain} | ground truth |" in table and f"| {domain} | retrieval |" in table
