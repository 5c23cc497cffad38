"""Adaptive steps on one model folder, end to end: calibration on the training split, then the repair benchmark.

    OMP_NUM_THREADS=1 python -m experiments.adaptive_v3 --model DIR --out runs/adaptive-v3

1. the two corpora of BENCHMARKS "Adaptive steps" under `--data-dir` (made when missing: seed 0 with 120
   training sequences per domain for the calibration, seed 1 for the test cases);
2. :mod:`experiments.adaptive_calibration` on the model (thresholds per domain on the TRAINING split, and the
   insertion per domain among the neighbours' average, the model from both neighbours and the model from the
   whole sequence, on the first `--n-insertion` training sequences), written to `--calibration`
   (default ``OUT/adaptive_calibration.json``; copy it into the model folder to ship it);
3. :mod:`experiments.adaptive_repair` with that calibration (seed 1's test-compositional split, `--n` records per
   domain; dropped / duplicated step and clean, true and generated sequences), written to
   ``OUT/adaptive_repair.json``;
4. the BENCHMARKS rows (:func:`experiments.adaptive_repair.markdown`) and the CPU seconds the run took.

The defaults are the published sizes (~3 CPU minutes for procseq-tiny on one thread, the corpora included).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from experiments import adaptive_calibration, adaptive_repair
from experiments.common import DOMAINS

CORPORA = {"corpus-a27": {"per_domain": 120, "test_per_domain": 8, "seed": 0},
           "corpus-a27-s1": {"per_domain": 6, "test_per_domain": 8, "seed": 1}}
"""The calibration corpus (seed 0) and the benchmark corpus (seed 1), as BENCHMARKS makes them."""


def corpora(data_dir: Path) -> dict[str, Path]:
    """The two corpora under `data_dir`, made (without progress bars) when missing."""
    from procseq.data.dataset import make_corpus

    out = {}
    for name, settings in CORPORA.items():
        path = data_dir / name
        if not (path / "manifest.json").is_file():
            make_corpus(path, progress=False, **settings)
        out[name] = path
    return out


def known_frames_note(model: str) -> str:
    """How the model conditions known frames (what the model insertions run with), one line for the log."""
    from procseq.conditioning.loras import KNOWN_FRAMES, shipped_folder
    from procseq.models.loading import ModelDefaults, resolve_model

    folder = Path(resolve_model(model))
    mode, lora = ModelDefaults.from_folder(folder).known_mode, shipped_folder(KNOWN_FRAMES, folder)
    if mode is None and lora is None:
        return (f"note: {folder} has no known_frames LoRA and its procseq.json no known_mode: known frames run in "
                "concat mode through the bare base; add \"known_mode\": \"inplace\" if it learnt them in place")
    return f"known frames: procseq.json known_mode {mode}, condition LoRA {lora}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line (see the module docstring); returns the repair result."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the model folder (procseq-tiny: the shipped model)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--calibration", default=None, type=Path,
                   help="where the calibration is written (default: OUT/adaptive_calibration.json)")
    p.add_argument("--data-dir", default=Path("data_cache"), type=Path, help="where the two corpora live")
    p.add_argument("--n-calibration", default=120, type=int, help="training sequences per domain")
    p.add_argument("--n-insertion", default=20, type=int, help="of those, the ones that choose the insertion")
    p.add_argument("--n", default=5, type=int, help="test-compositional records per domain")
    p.add_argument("--domains", default=DOMAINS)
    args = p.parse_args(argv)
    start = time.process_time()
    print(known_frames_note(args.model), flush=True)
    data = corpora(args.data_dir)
    calibration = args.calibration or args.out / "adaptive_calibration.json"
    adaptive_calibration.main(["--model", str(args.model), "--data", str(data["corpus-a27"]), "--n",
                               str(args.n_calibration), "--n-insertion", str(args.n_insertion),
                               "--domains", args.domains, "--out", str(calibration)])
    result = adaptive_repair.main(["--model", str(args.model), "--calibration", str(calibration), "--data",
                                   str(data["corpus-a27-s1"]), "--split", "test-compositional", "--n", str(args.n),
                                   "--domains", args.domains, "--out", str(args.out)])
    print(f"\nmodel {args.model}; calibration {calibration}; {time.process_time() - start:.0f} CPU s in this process")
    return result


if __name__ == "__main__":
    main()
