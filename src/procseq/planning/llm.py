"""Language-model planners: a local causal LM (a folder, through ``transformers``) or any OpenAI-compatible
endpoint (a URL) writes the plan as JSON.

Both plug into :func:`procseq.planning.plan_instruction` as a :data:`~procseq.planning.Planner`
``(title, domain, num_steps) -> Plan``. The model is asked for ``{"title": ..., "captions": [...]}`` with exactly
``num_steps`` captions; the answer is parsed and validated (:func:`parse_plan_reply`); a bad answer is asked for
once more, with what was wrong (a caption contradicting a value the prompt names is wrong too), and a second bad
answer is a ``ValueError`` that says so. The domain stays the
explicit argument (DESIGN.md #7): a domain in the answer is ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from procseq.endpoint import ChatEndpoint, EndpointError, json_objects, reply_text
from procseq.planning import Plan, Planner, corpus_plan
from procseq.planning.parser import contradictions, parse_prompt

PLANNER_PROMPT = """You plan step-by-step tutorials that show how something is made. Write the plan for: {title}
Domain: {domain}. Write exactly {num_steps} steps, first step first, each a short imperative caption in the \
style of these examples: {examples}
Answer with JSON only, exactly in this form:
{{"title": "<what is made>", "captions": ["<step 1>", "<step 2>", ...]}}"""


def parse_plan_reply(text: str, title: str, domain: str, num_steps: int, source: str) -> Plan:
    """The plan in a model's reply (code fences and prose around the JSON are tolerated).

    Raises ``ValueError`` naming what is wrong: no JSON object, no ``captions`` list of non-empty strings,
    or not `num_steps` of them.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the answer was empty")
    objects = json_objects(text)
    if not objects:
        raise ValueError(f"the answer holds no JSON object: {text[:200]!r}")
    obj = next((o for o in objects if "captions" in o), objects[0])
    captions = obj.get("captions")
    if not isinstance(captions, list) or not all(isinstance(c, str) and c.strip() for c in captions):
        raise ValueError(f"'captions' is not a list of non-empty strings: {str(obj)[:200]!r}")
    if len(captions) != num_steps:
        raise ValueError(f"it wrote {len(captions)} captions, not {num_steps}")
    answer_title = obj.get("title")
    return Plan(answer_title.strip() if isinstance(answer_title, str) and answer_title.strip() else title, domain,
                [c.strip() for c in captions], source=source, meta={"requested_title": title})


class LanguageModelPlanner:
    """A planner over a text-completion function ``complete(prompt) -> reply`` (one retry on a bad reply).

    Args:
        complete: sends one prompt, returns the model's reply text.
        source: the planner's name, recorded in :attr:`Plan.source` and error messages.
    """

    def __init__(self, complete: Callable[[str], str], source: str):
        self.complete, self.source = complete, source

    def prompt(self, title: str, domain: str, num_steps: int) -> str:
        """The request: the task, the corpus's own captions of the domain as style examples, the JSON form."""
        examples = "; ".join(corpus_plan(title, domain, min(num_steps, 4)).captions)
        return PLANNER_PROMPT.format(title=title, domain=domain, num_steps=num_steps, examples=examples)

    def __call__(self, title: str, domain: str, num_steps: int) -> Plan:
        """Ask for the plan; on a bad answer (no valid JSON plan, or captions that contradict the values the prompt
        names, :func:`~procseq.planning.parser.contradictions`) ask once more; then ``ValueError``."""
        prompt = self.prompt(title, domain, num_steps)
        asked = parse_prompt(domain, title)
        problem = ""
        for attempt in range(2):
            text = self.complete(prompt if attempt == 0 else
                                 f"{prompt}\nYour previous answer was not usable ({problem}). Answer with the JSON only.")
            try:
                plan = parse_plan_reply(text, title, domain, num_steps, self.source)
            except ValueError as err:
                problem = str(err)
                continue
            wrong = contradictions(domain, asked, plan.captions)
            if not wrong:
                plan.meta["asked"] = asked
                return plan
            problem = "its captions contradict the request: " + "; ".join(wrong)
        raise ValueError(f"The planner {self.source} gave no valid plan in two tries (last problem: {problem}); "
                         "use a model that follows JSON instructions, or the offline planner (--planner corpus).")


def local_lm_planner(path: str | Path, max_new_tokens: int = 384, device: str = "cpu") -> LanguageModelPlanner:
    """A planner on a local causal LM folder (``AutoModelForCausalLM``; greedy decoding; its chat template when it
    has one)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"No causal LM at {folder} (no config.json); pass a transformers model folder, "
                                "an http(s):// endpoint, or 'corpus'.")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).to(device).eval()

    def complete(prompt: str) -> str:
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                return_tensors="pt", return_dict=True)["input_ids"]
        else:
            ids = tokenizer(prompt, return_tensors="pt").input_ids
        room = int(getattr(model.config, "max_position_embeddings", 0) or 0) - max_new_tokens
        if room > 0:  # a small model: keep the end of the prompt (the JSON form)
            ids = ids[:, -room:]
        with torch.no_grad():
            out = model.generate(ids.to(device), max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                                 else tokenizer.eos_token_id)
        return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    return LanguageModelPlanner(complete, f"local LM {folder}")


def endpoint_planner(url: str, model: str = "default", api_key_env: str = "OPENAI_API_KEY",
                     timeout: float = 120.0) -> LanguageModelPlanner:
    """A planner on an OpenAI-compatible ``/chat/completions`` endpoint (JSON mode asked, temperature 0)."""
    client = ChatEndpoint(url, model, api_key_env=api_key_env, timeout=timeout, max_tokens=1024)

    def complete(prompt: str) -> str:
        try:
            return reply_text(client.request([{"role": "user", "content": prompt}]))
        except ConnectionError as err:
            raise ConnectionError(f"The planner endpoint failed: {err}") from err
        except EndpointError as err:  # an answer that is not a chat-completions object at all: no retry helps
            raise ValueError(f"The planner endpoint's answer is unusable: {err}") from err

    return LanguageModelPlanner(complete, f"endpoint {client.url}")


def load_planner(spec: str | None, model: str = "default", timeout: float = 120.0) -> Planner:
    """The planner named by `spec`: None or ``"corpus"`` (offline), an ``http(s)://`` URL (an OpenAI-compatible
    endpoint serving `model`; `timeout` seconds bound each whole request) or a local causal LM folder."""
    if spec is None or spec == "corpus":
        return corpus_plan
    if spec.startswith(("http://", "https://")):
        return endpoint_planner(spec, model, timeout=timeout)
    if not Path(spec).exists():
        raise FileNotFoundError(f"Planner {spec!r} is neither 'corpus', an http(s):// URL nor an existing folder.")
    return local_lm_planner(spec)


__all__ = ["LanguageModelPlanner", "PLANNER_PROMPT", "endpoint_planner", "load_planner", "local_lm_planner",
           "parse_plan_reply"]

