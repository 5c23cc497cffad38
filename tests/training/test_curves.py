"""Loss curve PNGs from training logs."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from procseq.training.curves import plot_curves, read_log


def test_plot_from_log(tmp_path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s, "psnr": s}) + "\n" for s in range(1, 50)))
    pts = read_log(log)
    assert pts[0] == (1, 1.0) and len(pts) == 49
    out = plot_curves({"transformer": pts, "autoencoder psnr": read_log(log, "psnr")}, tmp_path / "c.png")
    with Image.open(out) as im:
        assert im.size == (640, 720)
        assert len(set(im.getdata())) > 2  # something was drawn
    with pytest.raises(ValueError, match="No points"):
        plot_curves({"x": []}, tmp_path / "d.png")
