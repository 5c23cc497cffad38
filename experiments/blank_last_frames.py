"""How often a model leaves the last real step of a sequence blank, per length (the v2 diagnosis, BENCHMARKS.md).

    python experiments/blank_last_frames.py ~/.cache/procseq/eval/v2/v1-test-compositional ...

Reads `procseq eval` output folders (sequences/<id>/frame_XX.png + sequence.json with the spec). A last
frame counts as blank when it is nearly uniform (pixel standard deviation < 8 of 255) while the true last
frame is not: the model drew an empty cell where the process's final step belongs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from procseq.eval import render_spec

BLANK_STD = 8.0


def blank_counts(run: Path) -> dict[int, tuple[int, int]]:
    """Length -> (sequences whose last frame is blank, sequences) for one eval folder."""
    counts: dict[int, list[int]] = {}
    for folder in sorted((run / "sequences").iterdir()):
        spec = json.loads((folder / "sequence.json").read_text())["spec"]
        n = int(spec["num_frames"])
        last = np.asarray(Image.open(folder / f"frame_{n - 1:02d}.png").convert("RGB"), dtype=np.float64)
        truth = np.asarray(render_spec(spec)[-1], dtype=np.float64)
        c = counts.setdefault(n, [0, 0])
        c[0] += int(last.std() < BLANK_STD <= truth.std())
        c[1] += 1
    return {n: (b, t) for n, (b, t) in sorted(counts.items())}


def main(runs: list[str]) -> None:
    for run in runs:
        counts = blank_counts(Path(run).expanduser())
        total = sum(b for b, _ in counts.values()), sum(t for _, t in counts.values())
        cells = ", ".join(f"{n}: {b}/{t}" for n, (b, t) in counts.items())
        print(f"{run}: blank last frames {total[0]}/{total[1]} (by length {cells})")


if __name__ == "__main__":
    main(sys.argv[1:])
