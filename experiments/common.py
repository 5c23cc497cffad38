"""What the experiment drivers share: the base domains and the common command-line options."""

from __future__ import annotations

import argparse
from pathlib import Path

BASE_DOMAINS = ("painting", "line_drawing", "lego", "pixel_art", "cooking", "emoji")
"""The base domains every known-frames, regional and adaptive measurement runs on."""
DOMAINS = ",".join(BASE_DOMAINS)
"""The same, as the ``--domains`` default."""
SPLITS = ("test-seen", "test-compositional")


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """The options every known-frame measurement takes: --out, --data, --model, --n, --domains."""
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--data", default="data_cache/corpus", type=Path)
    p.add_argument("--model", default=None)
    p.add_argument("--n", default=10, type=int, help="records per domain and split")
    p.add_argument("--domains", default=DOMAINS)
