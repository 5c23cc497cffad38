"""Plans from words and pictures: the prompt parser and caption writer (offline), and language-model planners.

:func:`corpus_plan` (the offline default) parses a prompt into the domain's attributes and writes the
captions from them; :func:`plan_instruction` turns an instruction into a plan; :mod:`procseq.planning.llm`
holds the local-LM and endpoint planners, :mod:`procseq.planning.reader` the plan read from a picture.
"""

from procseq.conditioning.plan import Plan
from procseq.planning.planner import (
    DOMAIN_WORDS, Planner, attribute_plan, corpus_plan, instruction_domain, instruction_steps, instruction_title,
    make_plan, natural_steps, plan_instruction, resample_captions, template_plan,
)

__all__ = ["DOMAIN_WORDS", "Plan", "Planner", "attribute_plan", "corpus_plan", "instruction_domain",
           "instruction_steps", "instruction_title", "make_plan", "natural_steps", "plan_instruction",
           "resample_captions", "template_plan"]
