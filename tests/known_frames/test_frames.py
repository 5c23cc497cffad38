"""KnownFrames: index checks, tokens, in-place overwrite, loss mask, pasting the given images back."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from procseq.conditioning.frames import KnownFrames, check_known_indices
from procseq.layout import GridLayout, frame_token_indices


@pytest.mark.parametrize("indices, frames, match", [
    ([], 4, "No known frames"), ([4], 4, "outside"), ([-5], 4, "outside"), ([1, 1], 4, "twice"),
    ([0, -4], 4, "twice"), ([0, 1, 2, 3], 4, "nothing to generate"), (["1"], 4, "whole number"),
    ([True], 4, "whole number"),
])
def test_bad_indices_are_refused(indices, frames, match) -> None:
    with pytest.raises(ValueError, match=match):
        check_known_indices(indices, frames)


def test_indices_are_normalised_and_sorted() -> None:
    assert check_known_indices([-1, 0, 2], 9) == (0, 2, 8)


def known(indices=(0, 3), batch: int = 1) -> KnownFrames:
    return KnownFrames(indices, torch.randn(batch, len(indices), 4, 4, 4, generator=torch.Generator().manual_seed(0)))


def test_tokens_overwrite_and_loss_mask() -> None:
    k, layout = known(), GridLayout.for_frames(4)
    tokens = k.tokens()
    assert tokens.shape == (1, 2 * 4, 16) and k.frame_tokens == 2
    latents = torch.randn(3, 16, 16)
    out = k.overwrite(latents, layout)
    cells = frame_token_indices(layout, 2)
    for j, idx in enumerate((0, 3)):
        assert torch.equal(out[:, cells[idx]], tokens[:, j * 4:(j + 1) * 4].expand(3, -1, -1))
    for idx in (1, 2):
        assert torch.equal(out[:, cells[idx]], latents[:, cells[idx]])
    assert torch.equal(latents, latents.clone())  # the input is not modified
    mask = k.loss_mask(layout)
    assert mask.sum() == 8 and not mask[cells[0]].any() and mask[cells[1]].all()


def test_shape_is_checked_and_images_go_back_in_place() -> None:
    with pytest.raises(ValueError, match="Known latents"):
        KnownFrames((0, 1), torch.zeros(1, 3, 4, 4, 4))
    red, blue = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    k = KnownFrames((1,), torch.zeros(1, 1, 4, 4, 4), {1: red})
    out = k.paste([blue, blue, blue])
    assert out[1].tobytes() == red.tobytes() and out[0].tobytes() == blue.tobytes()
