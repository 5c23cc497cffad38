"""The frame-by-frame measurement runs end to end on the micro model (numbers are meaningless there)."""

from __future__ import annotations

from experiments.frame_by_frame import draw_specs, planner_accuracy, score_runs, table, timing
from procseq.layouts.frame_by_frame import FrameByFrameOptions


def test_compare_ablation_timing_and_planner(tiny_pipe) -> None:
    specs = draw_specs(["lego"], [9], 1, "test-compositional")
    assert len(specs) == 1 and specs[0].num_frames == 9
    results = score_runs(tiny_pipe, specs, {"grid": ("grid", None),
                                            "no history": ("frame-by-frame", FrameByFrameOptions(history="none"))})
    assert set(results) == {"grid", "no history"} and results["grid"]["9"]["n"] == 1
    assert "| no history | 9 | 1 |" in table(results, "t")
    t = timing(tiny_pipe, [3])
    assert len(t["3"]["frames_s"]) == 3
    acc = planner_accuracy(draw_specs(["lego", "painting"], [9], 2, "test-compositional"))
    assert acc["with count"]["n"] == 4 and acc["with count"]["steps"] == 1.0
