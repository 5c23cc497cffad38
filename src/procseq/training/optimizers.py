"""What keeps a training step lean: the optimizer (CAME, AdamW, 8-bit AdamW) and the text cache."""

from __future__ import annotations

from typing import Any

import torch


def build_optimizer(params: list[torch.nn.Parameter], name: str, lr: float, weight_decay: float):
    """CAME (``came-pytorch``), AdamW or bitsandbytes' 8-bit AdamW over `params`."""
    if name == "came":
        try:
            from came_pytorch import CAME
        except ImportError as err:
            raise ValueError("optim.name 'came' needs the CAME optimizer: pip install 'procseq[train]' "
                             "(or set optim.name: adamw).") from err

        return CAME(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999, 0.9999), eps=(1e-30, 1e-16))
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw8bit":
        try:
            import bitsandbytes
        except ImportError as err:
            raise ValueError("optim.name 'adamw8bit' needs bitsandbytes (pip install bitsandbytes, on a GPU); "
                             "or set optim.name: came, which also keeps little state.") from err
        return bitsandbytes.optim.AdamW8bit(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"Unknown optimizer {name!r}; use 'came', 'adamw' or 'adamw8bit'.")


class TextCache:
    """``data.cache_text``: each distinct prompt encoded once by the (frozen) text encoders, kept in CPU memory
    (FLUX.1-dev: 4 MB of T5 states per prompt), so the encoders run once per prompt, not once per step."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.cache: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def __call__(self, prompts: list[str], device: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """T5 tokens ``(B, seq, D)``, pooled CLIP ``(B, P)`` and text ids of `prompts`, on `device`."""
        missing = sorted(set(prompts) - set(self.cache))
        if missing:
            embeds, pooled, ids = self.pipe.encode_prompt(missing, None, device="cpu",
                                                          max_sequence_length=self.pipe.tokenizer_2.model_max_length)
            self.cache.update({p: (embeds[i].clone(), pooled[i].clone(), ids.cpu()) for i, p in enumerate(missing)})
        return (torch.stack([self.cache[p][0] for p in prompts]).to(device),
                torch.stack([self.cache[p][1] for p in prompts]).to(device), self.cache[prompts[0]][2].to(device))
