"""Fixtures of the adapter tests."""

from __future__ import annotations

import pytest
from diffusers import FluxTransformer2DModel

from tests.adapters.micro import micro_transformer


@pytest.fixture
def transformer() -> FluxTransformer2DModel:
    return micro_transformer()
