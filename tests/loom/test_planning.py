"""The planner: instructions read offline, LM and endpoint planners asked for JSON, retried once, then an error."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from procseq.cli import main
from procseq.planning.llm import load_planner, local_lm_planner, parse_plan_reply
from procseq.planning import Plan, instruction_domain, instruction_steps, instruction_title, plan_instruction


@pytest.mark.parametrize("text, domain, steps", [
    ("show how to build a blue LEGO tower in 12 steps", "lego", 12),
    ("a twelve-step tutorial for pixel art of a green cat", "pixel_art", 12),
    ("teach me to paint a red square under a night sky", "painting", None),
    ("an origami star folded from a red square of paper", "origami", None),
    ("two carrots cooked and served on a blue plate, 4 steps", "cooking", 4),
])
def test_instruction_domain_and_steps(text: str, domain: str, steps: int | None) -> None:
    assert instruction_domain(text) == domain
    assert instruction_steps(text) == steps


def test_plan_instruction_writes_corpus_captions() -> None:
    plan = plan_instruction("show how to build a blue LEGO tower in 12 steps")
    assert (plan.domain, plan.num_steps, plan.title) == ("lego", 12, "a blue LEGO tower")
    assert plan.meta["attributes"]["structure"] == "tower" and "blue" in plan.meta["attributes"].values()
    assert "baseplate" in plan.captions[0]
    assert instruction_title("Show me how to draw a house in 6 steps.") == "a house"
    with pytest.raises(ValueError, match="instruction is empty"):
        plan_instruction("  ")


def test_parse_plan_reply_tolerates_prose_and_checks_count() -> None:
    text = 'Sure!\n```json\n{"title": "a tower", "captions": ["one", "two"]}\n```'
    assert parse_plan_reply(text, "t", "lego", 2, "x").captions == ["one", "two"]
    with pytest.raises(ValueError, match="3 captions, not 2"):
        parse_plan_reply('{"captions": ["a", "b", "c"]}', "t", "lego", 2, "x")
    with pytest.raises(ValueError, match="no JSON"):
        parse_plan_reply("I cannot do that", "t", "lego", 2, "x")


def test_endpoint_planner_valid_and_retry(fake_endpoint) -> None:
    good = json.dumps({"title": "a blue tower", "domain": "painting", "captions": ["lay the base", "add a brick", "top"]})
    url, endpoint = fake_endpoint(["not json at all", good])
    plan = plan_instruction("build a blue LEGO tower in 3 steps", load_planner(url))
    assert plan.captions == ["lay the base", "add a brick", "top"]
    assert plan.domain == "lego"  # the domain stays the explicit one, never the answer's
    assert len(endpoint.requests) == 2 and "not usable" in endpoint.requests[1]["messages"][0]["content"]


def test_endpoint_planner_malformed_twice_is_a_clear_error(fake_endpoint) -> None:
    url, endpoint = fake_endpoint(['{"captions": "lay the base"}'])
    with pytest.raises(ValueError, match="no valid plan in two tries.*not a list"):
        plan_instruction("build a blue LEGO tower in 3 steps", load_planner(url))
    assert len(endpoint.requests) == 2


def test_local_lm_planner_gibberish_is_a_clear_error(tiny_lm_dir) -> None:
    planner = local_lm_planner(tiny_lm_dir, max_new_tokens=16)
    with pytest.raises(ValueError, match="gave no valid plan in two tries"):
        planner("a blue lego tower", "lego", 3)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        local_lm_planner(tiny_lm_dir.parent)


def test_cli_plan_then_generate_with_it(tmp_path, tiny_model_dir, fake_endpoint) -> None:
    runner = CliRunner()
    out = tmp_path / "plan.json"
    r = runner.invoke(main, ["plan", "show how to build a blue lego tower in 4 steps", "--out", str(out)])
    assert r.exit_code == 0, r.output
    plan = Plan.load(out)
    assert (plan.domain, plan.num_steps) == ("lego", 4)
    plan.captions[1] = "an edited step"  # editable by hand
    plan.save(out)
    r = runner.invoke(main, ["generate", "--plan", str(out), "--model", str(tiny_model_dir), "--steps", "1",
                             "--out", str(tmp_path / "seq")])
    assert r.exit_code == 0, r.output
    record = json.loads((tmp_path / "seq" / "sequence.json").read_text())
    assert record["captions"][1] == "an edited step" and len(record["captions"]) == 4
    url, _ = fake_endpoint(["nonsense"])
    r = runner.invoke(main, ["plan", "a lego tower", "--planner", url, "--out", str(tmp_path / "bad.json")])
    assert r.exit_code == 2 and "no valid plan" in r.output and not (tmp_path / "bad.json").exists()


def test_endpoint_planner_rejects_captions_that_contradict_the_prompt(fake_endpoint) -> None:
    wrong = json.dumps({"title": "a red star", "captions": ["sketch a circle", "fill the circle with flat blue paint"]})
    right = json.dumps({"title": "a red star", "captions": ["sketch the star", "fill the star with flat red paint"]})
    url, endpoint = fake_endpoint([wrong, right])
    plan = load_planner(url)("a painting of a red star", "painting", 2)
    assert plan.captions[1] == "fill the star with flat red paint" and len(endpoint.requests) == 2
    assert "contradict" in endpoint.requests[1]["messages"][0]["content"]
    url, endpoint = fake_endpoint([wrong])
    with pytest.raises(ValueError, match="no valid plan in two tries.*contradict"):
        load_planner(url)("a painting of a red star", "painting", 2)
