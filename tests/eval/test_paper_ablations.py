"""The paper-ablation drivers (issue 26): the default variant samples exactly what `procseq eval --mode` samples,
and each variant's paired difference to it gets a 95 % interval (micro model: the numbers are meaningless)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from experiments.ablation import paired_table
from experiments.frame_by_frame import main as fbf_main
from experiments.regional import main as regional_main
from procseq.cli import main as cli_main
from procseq.data.dataset import make_corpus
from procseq.eval.metrics import SequenceScore
from procseq.eval.report import Report


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "c"
    make_corpus(out, per_domain=1, test_per_domain=1, progress=False, overwrite=True)
    return out


def frames(folder) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted(folder.glob("frame_*.png"))]


def same_sequences(a, b) -> None:
    names = sorted(p.name for p in (a / "sequences").iterdir())
    assert names and names == sorted(p.name for p in (b / "sequences").iterdir())
    for name in names:
        fa, fb = frames(a / "sequences" / name), frames(b / "sequences" / name)
        assert len(fa) == len(fb) > 0 and all(np.array_equal(x, y) for x, y in zip(fa, fb))


@pytest.mark.parametrize("layout", ["regional", "frame-by-frame"])
def test_default_variant_is_what_procseq_eval_samples(tiny_model_dir, corpus, tmp_path, layout: str) -> None:
    common = ["--model", str(tiny_model_dir), "--data", str(corpus), "--split", "test-compositional", "--n", "1",
              "--domains", "lego"]
    result = CliRunner().invoke(cli_main, ["eval", *common, "--mode", layout, "--out", str(tmp_path / "eval")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    if layout == "regional":
        regional_main([*common, "--out", str(tmp_path / "abl"), "--captions", "plan", "--default", "default",
                       "--variant", "default=regional", "--variant", "grid-ids=regional:ids=grid"])
        default = tmp_path / "abl" / "default"
    else:
        fbf_main(["ablation", *common, "--out", str(tmp_path / "abl"),
                  "--variants", "default (sparse history),no step embedding"])
        default = tmp_path / "abl" / "default-sparse-history"
    same_sequences(tmp_path / "eval", default)
    table = ((tmp_path / "abl" / "paired.md") if layout == "regional" else (tmp_path / "abl" / "results.md")).read_text()
    assert "(default)" in table and "[" in table


def score(name: str, step: float, attribute: float | None) -> SequenceScore:
    return SequenceScore(domain="lego", num_frames=3, attribute_acc=attribute, step_acc=step, psnr=20.0,
                         similarity=0.5, consistency=None, name=name)


def test_paired_table_marks_a_difference_outside_noise_only() -> None:
    ids = [f"r{i}" for i in range(8)]
    base = Report("d", [score(k, 0.5, 0.5) for k in ids])
    worse = Report("w", [score(k, 0.25, 0.5) for k in ids])
    lines = paired_table({"default": base, "worse": worse}, "default").splitlines()
    assert lines[2].startswith("| default | 8 | 0.500 | (default) |")
    assert lines[3] == "| worse | 8 | 0.250 | -0.250 [-0.250, -0.250] * | 0.500 | +0.000 [+0.000, +0.000] |"
    with pytest.raises(ValueError, match="default variant"):
        paired_table({"worse": worse}, "default")
