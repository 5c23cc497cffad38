"""A training process to kill: ``python -m tests.reliability.train_worker MODEL_DIR OUT MAX_STEPS [SLOW_SAVE_S]``.

The micro model of ``tests/conftest.py`` with the trainer of ``tests/training/test_trainer.py``, a
checkpoint every step; SLOW_SAVE_S > 0 stretches every save (between writing the files and the
rename) so that a kill can be aimed at it.
"""

from __future__ import annotations

import sys
import time

from procseq.training import checkpoints
from tests.training.test_trainer import make_trainer


def main(model_dir: str, out: str, max_steps: str, slow_save_s: str = "0") -> None:
    """Train to `max_steps`, resuming from `out` like ``procseq train`` does."""
    if float(slow_save_s) > 0:
        write = checkpoints.write_manifest

        def slow(folder):
            print(f"saving {folder}", flush=True)
            time.sleep(float(slow_save_s))
            return write(folder)

        checkpoints.write_manifest = slow
    trainer = make_trainer(model_dir, out, int(max_steps))
    trainer.cfg.train.checkpoint_every = 1
    trainer.train(progress=False)


if __name__ == "__main__":
    main(*sys.argv[1:])
