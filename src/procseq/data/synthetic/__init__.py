"""Synthetic procedural corpus with ground truth: one module per domain + the shared base."""

from procseq.data.synthetic import draw
from procseq.data.synthetic.base import (
    DOMAIN_PLAN, REGISTRY, SPLITS, Domain, DomainRole, Spec, attribute_accuracy, domains_with_role,
    generate, get_domain,
)
from procseq.data.synthetic import (  # noqa: F401  (importing registers the domains)
    clay, cooking, emoji, lego, line_drawing, origami, painting, pixel_art, sand_art,
)

__all__ = [
    "DOMAIN_PLAN", "REGISTRY", "SPLITS", "Domain", "DomainRole", "Spec", "attribute_accuracy",
    "domains_with_role", "draw", "generate", "get_domain",
]
