"""The regional measurement's variant syntax: bad variants fail before anything runs."""

from __future__ import annotations

import pytest

from experiments.regional import parse_variant


def test_variants_parse() -> None:
    assert parse_variant("grid=grid") == ("grid", "grid", {}, None)
    assert parse_variant("x=regional:mask=0,blend=0.3,ids=grid,fusion=0.8,lora=L") == \
        ("x", "regional", {"mask": False, "blend": 0.3, "ids": "grid", "fusion": 0.8}, "L")
    for bad in ("grid", "x=tiles", "x=regional:alpha=1", "x=grid:blend=0"):
        with pytest.raises(ValueError, match="Variant"):
            parse_variant(bad)
