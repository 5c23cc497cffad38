"""Step-wise regional attention masks (CookAnything): step text i <-> frame region i, the plan text shared.

In the regional mode one transformer pass holds every frame of the process as its own *region* of image
tokens, and the text holds the plan (the prompt, shared by every step) followed by every step caption.
The mask lets

    query \\ key       plan text   step text j    region j     known frames
    plan text          yes         no             no           yes
    step text i        yes         i == j         i == j       yes
    region i           yes         i == j         i == j       yes

so each frame is driven by its own step text and sees neither the other steps' text nor the other frames.
The plan text is read-only context: it reads only itself, so it carries nothing from one step to another
and the separation holds through every layer, not just one (tested by perturbing a blocked token).
Cross-frame coherence comes from the shared plan text and the unmasked global pass that the processor
blends in: ``z = a * z_global + (1 - a) * z_regional``). The mask travels to
:class:`procseq.attention.processors.ProcseqAttnProcessor` through ``joint_attention_kwargs``
(``region_mask``, ``region_blend``; DESIGN.md #11). All builders are pure functions.

Token order is Flux's: in the double blocks the text tokens come first, then the image tokens, and the
single blocks see the same concatenation. Known-frame keys/values (the condition K/V) are appended after
the image keys; every query may read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

Span = tuple[int, int]


@dataclass(frozen=True)
class RegionLayout:
    """Where the plan text, each step's text and each frame's region lie in the token sequence.

    Args:
        text_tokens: all text tokens (plan + steps); the plan tokens are those outside every step span.
        step_spans: per step, ``(start, end)`` of its caption in the text tokens.
        regions: per step, ``(start, end)`` of its frame in the image tokens (same count as `step_spans`).
    """

    text_tokens: int
    step_spans: tuple[Span, ...]
    regions: tuple[Span, ...]

    def __post_init__(self) -> None:
        if len(self.step_spans) != len(self.regions):
            raise ValueError(f"{len(self.step_spans)} step texts for {len(self.regions)} frame regions; "
                             "give one caption per frame.")
        if any(not 0 <= s < e <= self.text_tokens for s, e in self.step_spans):
            raise ValueError(f"Step spans {self.step_spans} must lie inside the {self.text_tokens} text tokens.")
        if any(s >= e or s < 0 for s, e in self.regions):
            raise ValueError(f"Frame regions {self.regions} must be non-empty ranges of image tokens.")

    @property
    def image_tokens(self) -> int:
        """Image tokens (the end of the last region)."""
        return max(e for _, e in self.regions)

    @classmethod
    def consecutive(cls, text_tokens: int, step_spans: list[Span], tokens_per_frame: int) -> RegionLayout:
        """Frames one after another, `tokens_per_frame` image tokens each (the regional mode's token order)."""
        regions = tuple((k * tokens_per_frame, (k + 1) * tokens_per_frame) for k in range(len(step_spans)))
        return cls(text_tokens, tuple(step_spans), regions)


def region_mask(layout: RegionLayout, text_tokens: int | None = None, extra_keys: int = 0) -> torch.Tensor:
    """The boolean regional mask ``(L, L + extra_keys)``, True where a query may attend to a key.

    Args:
        layout: the token layout (:class:`RegionLayout`).
        text_tokens: the text length of the pass, if not `layout.text_tokens` (a CFG branch whose text is
            only the negative prompt): then every text token is shared, and the frames stay apart.
        extra_keys: keys appended after the image (known-frame condition K/V), readable by every query.

    ``L`` is text + image tokens, text first (Flux's order).
    """
    t = layout.text_tokens if text_tokens is None else text_tokens
    n = layout.image_tokens
    # Group of every token: -1 = shared (plan text), k = step k (its text and its region).
    group = torch.full((t + n,), -1, dtype=torch.long)
    if t == layout.text_tokens:
        for k, (s, e) in enumerate(layout.step_spans):
            group[s:e] = k
    for k, (s, e) in enumerate(layout.regions):
        group[t + s:t + e] = k
    q, key = group[:, None], group[None, :]
    mask = (q == key) | (key == -1)
    if extra_keys:
        mask = torch.cat([mask, mask.new_ones(t + n, extra_keys)], dim=1)
    return mask


@dataclass(frozen=True)
class RegionGroups:
    """The regional mask as gather indices, for attention computed group by group (linear in the frames).

    Every token belongs to the shared group (the plan text; all text in a branch without step spans) or to one
    step group ``k`` (step text ``k`` and region ``k``). A step group's queries read its own keys and the shared
    keys; the shared queries read the shared keys only: exactly :func:`region_mask`.

    Args:
        shared: positions of the shared keys ``(S,)``: shared text, then the extra (known-frame) keys.
        shared_queries: positions of the shared queries ``(Sq,)`` (the shared text).
        members: ``(G, M)`` positions of each step group's tokens, padded to the largest group with position 0.
        valid: ``(G, M)`` True where `members` is a real token.
    """

    shared: torch.Tensor
    shared_queries: torch.Tensor
    members: torch.Tensor
    valid: torch.Tensor


def region_groups(layout: RegionLayout, text_tokens: int | None = None, extra_keys: int = 0) -> RegionGroups:
    """The :class:`RegionGroups` of the mask :func:`region_mask` builds for the same arguments."""
    t = layout.text_tokens if text_tokens is None else text_tokens
    n = layout.image_tokens
    groups: list[list[int]] = [[] for _ in layout.regions]
    step_text = t == layout.text_tokens
    in_step = torch.zeros(t, dtype=torch.bool)
    if step_text:
        for k, (s, e) in enumerate(layout.step_spans):
            groups[k].extend(range(s, e))
            in_step[s:e] = True
    for k, (s, e) in enumerate(layout.regions):
        groups[k].extend(range(t + s, t + e))
    shared_text = torch.arange(t)[~in_step]
    width = max(len(g) for g in groups)
    members = torch.zeros(len(groups), width, dtype=torch.long)
    valid = torch.zeros(len(groups), width, dtype=torch.bool)
    for k, g in enumerate(groups):
        members[k, :len(g)] = torch.tensor(g, dtype=torch.long)
        valid[k, :len(g)] = True
    shared = torch.cat([shared_text, torch.arange(t + n, t + n + extra_keys)])
    return RegionGroups(shared, shared_text, members, valid)


def additive_mask(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A boolean mask as an additive one: 0 where attention is allowed, ``-inf`` where it is blocked."""
    return torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, float("-inf"))


@dataclass
class RegionMask:
    """The per-call regional-attention state handed to the processors in ``joint_attention_kwargs``.

    It builds (and keeps for the rest of the call) the mask for each text length and key count it meets:
    the conditional and the negative CFG branch have different text lengths, and known frames add keys.

    Args:
        layout: the token layout.
        grouped: compute the masked attention group by group (:class:`RegionGroups`, linear in the frames);
            False: one dense masked attention (the same result; kept for the speed comparison).
    """

    layout: RegionLayout
    grouped: bool = True
    _masks: dict[tuple[int, int, str], Any] = field(default_factory=dict, repr=False)

    def for_attention(self, query_tokens: int, key_tokens: int, device: torch.device) -> torch.Tensor:
        """The mask ``(1, 1, query_tokens, key_tokens)`` for a pass of `query_tokens` (text + image) queries."""
        text = query_tokens - self.layout.image_tokens
        if text < 0 or key_tokens < query_tokens:
            raise ValueError(f"A pass of {query_tokens} queries and {key_tokens} keys does not hold the "
                             f"{self.layout.image_tokens} image tokens of this region layout.")
        key = (query_tokens, key_tokens, str(device))
        if key not in self._masks:
            mask = region_mask(self.layout, text, key_tokens - query_tokens)
            self._masks[key] = mask[None, None].to(device)
        return self._masks[key]

    def groups(self, query_tokens: int, key_tokens: int, device: torch.device) -> RegionGroups:
        """The mask of :meth:`for_attention` as :class:`RegionGroups` (kept for the rest of the call)."""
        text = query_tokens - self.layout.image_tokens
        if text < 0 or key_tokens < query_tokens:
            raise ValueError(f"A pass of {query_tokens} queries and {key_tokens} keys does not hold the "
                             f"{self.layout.image_tokens} image tokens of this region layout.")
        key = (query_tokens, key_tokens, f"groups-{device}")
        if key not in self._masks:
            g = region_groups(self.layout, text, key_tokens - query_tokens)
            self._masks[key] = RegionGroups(*(x.to(device) for x in (g.shared, g.shared_queries, g.members, g.valid)))
        return self._masks[key]

    def attention_kwargs(self, blend: float = 0.0) -> dict[str, object]:
        """The ``joint_attention_kwargs`` that hand this mask (and the global-pass share `blend`) to the processors."""
        if not 0.0 <= blend <= 1.0:
            raise ValueError(f"The global blend must be between 0 and 1, got {blend}.")
        return {"region_mask": self, "region_blend": float(blend)}


__all__ = ["RegionGroups", "RegionLayout", "RegionMask", "additive_mask", "region_groups", "region_mask"]
