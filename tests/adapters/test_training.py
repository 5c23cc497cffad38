"""`procseq train adapter` end to end: only the adapter trains, routing per sample, exact resume."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from click.testing import CliRunner
from diffusers import FluxTransformer2DModel

from procseq.adapters import adapter_file_info, adapter_layers, load_adapters
from procseq.cli import main
from procseq.data.dataset import make_corpus
from procseq.training.adapters import run_adapter_training
from procseq.training.config import RunConfig


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("adapters") / "corpus"
    make_corpus(out, per_domain=1, test_per_domain=1, adapter_sizes={"clay": 4, "sand_art": 4}, progress=False)
    return out


def config(model_dir, corpus, out, max_steps: int, **adapter) -> RunConfig:
    return RunConfig.from_dict({
        "model": {"path": str(model_dir)},
        "data": {"dir": str(corpus), "domains": ["clay", "sand_art"], "caption_dropout": 0.2, "cache_latents": True},
        "adapter": {"rank": 4, "domain_fraction": 0.5, **adapter},
        "optim": {"name": "adamw", "lr": 1e-2, "weight_decay": 0.0, "warmup_steps": 1},
        "train": {"output_dir": str(out), "max_steps": max_steps, "batch_size": 2, "checkpoint_every": 2,
                  "log_every": 1, "seed": 1},
    })


def losses(out) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("adapter", [{"kind": "asymmetric"}, {"kind": "lora"},
                                     {"kind": "masked", "alignment": {"enabled": True}},
                                     {"kind": "masked", "mask": "rows", "row_mask": "learned"}],
                         ids=["asymmetric", "lora", "masked+alignment", "masked-rows-learned"])
def test_only_the_adapter_trains_and_resume_is_exact(tiny_model_dir, corpus, tmp_path, adapter) -> None:
    straight = run_adapter_training(config(tiny_model_dir, corpus, tmp_path / "a", 4, **adapter), progress=False)
    run_adapter_training(config(tiny_model_dir, corpus, tmp_path / "b", 2, **adapter), progress=False)  # killed
    run_adapter_training(config(tiny_model_dir, corpus, tmp_path / "b", 4, **adapter), progress=False)  # resumed
    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert len(a) == 4 and a == pytest.approx(b, rel=1e-5, abs=1e-7)

    file = straight.model_dir / "adapters.safetensors"
    info = adapter_file_info(file)
    kind = "asymmetric" if adapter["kind"] == "lora" else adapter["kind"]
    assert info["kind"] == kind
    assert info["domains"] == (["all"] if adapter["kind"] == "lora" else ["clay", "sand_art"])
    assert (straight.model_dir / "training" / "loss.png").is_file()

    # the base is untouched: a fresh base + the file, adapters disabled, equals the base exactly
    base = FluxTransformer2DModel.from_pretrained(tiny_model_dir, subfolder="transformer")
    tuned = FluxTransformer2DModel.from_pretrained(tiny_model_dir, subfolder="transformer")
    load_adapters(tuned, file)
    layers = adapter_layers(tuned)
    for name, layer in layers.items():
        assert torch.equal(layer.base.weight, base.get_submodule(name).weight)
    # and the adapter learned something (B moved off its zero init)
    assert any(p.abs().sum() > 0 for layer in layers.values() for n, p in layer.named_parameters()
               if n.startswith("lora_B"))


def test_frozen_a_stays_at_its_init_and_init_from_continues_a_file(tiny_model_dir, corpus, tmp_path) -> None:
    from safetensors.torch import load_file

    from procseq.training.adapters import add_adapter

    first = config(tiny_model_dir, corpus, tmp_path / "a", 2, kind="asymmetric", freeze_a=True)
    file = run_adapter_training(first, progress=False).model_dir / "adapters.safetensors"
    init = FluxTransformer2DModel.from_pretrained(tiny_model_dir, subfolder="transformer")
    with torch.random.fork_rng(devices=[]):  # the trainer's seeded initialisation
        torch.manual_seed(first.train.seed)
        add_adapter(init, first.adapter, ["clay", "sand_art"])
    saved = load_file(str(file))
    for name, layer in adapter_layers(init).items():
        assert torch.equal(saved[f"transformer.{name}.lora_A.weight"], layer.lora_A.weight)
    assert any(saved[k].abs().sum() > 0 for k in saved if ".lora_B." in k)

    # MakeAnything's second stage: the file's A (kept frozen) and Bs, plus a new domain (its B starts at zero)
    cfg = config(tiny_model_dir, corpus, tmp_path / "b", 2, kind="asymmetric", freeze_a=True, init_from=str(file),
                 domains=["clay", "sand_art", "paint2"])
    again = load_file(str(run_adapter_training(cfg, progress=False).model_dir / "adapters.safetensors"))
    assert all(torch.equal(again[k], saved[k]) for k in saved if ".lora_A." in k)
    assert any(".lora_B.paint2." in k for k in again)
    with pytest.raises(ValueError, match="adapter.kind"):
        run_adapter_training(config(tiny_model_dir, corpus, tmp_path / "c", 1, kind="masked", init_from=str(file)),
                             progress=False)


def test_adapter_domains_must_cover_the_data(tiny_model_dir, corpus, tmp_path) -> None:
    cfg = config(tiny_model_dir, corpus, tmp_path / "c", 1, kind="asymmetric", domains=["clay"])
    with pytest.raises(ValueError, match="sand_art"):
        run_adapter_training(cfg, progress=False)
    with pytest.raises(ValueError, match="adapter.kind"):
        RunConfig.from_dict({"adapter": {"kind": "dora"}})


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_train_list_export_generate(tiny_model_dir, corpus, tmp_path) -> None:
    cfg = config(tiny_model_dir, corpus, tmp_path / "run", 2, kind="asymmetric").to_dict()
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = invoke("train", "adapter", tmp_path / "c.yaml", "--set", "train.max_steps=3")
    assert res.exit_code == 0, res.output
    file = tmp_path / "run" / "model" / "adapters.safetensors"
    assert json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])["step"] == 3

    res = invoke("adapter", "list", "--model", tiny_model_dir, "--adapters", file)
    assert res.exit_code == 0 and res.output.splitlines() == ["clay", "sand_art"]
    res = invoke("adapter", "list", "--model", tiny_model_dir)
    assert res.exit_code == 2 and "no installed adapters" in res.output

    res = invoke("adapter", "export", "--model", tiny_model_dir, "--adapters", file, "--domain", "clay",
                 "--out", tmp_path / "clay.safetensors")
    assert res.exit_code == 0, res.output
    res = invoke("adapter", "export", "--model", tiny_model_dir, "--adapters", file, "--domain", "lego",
                 "--out", tmp_path / "lego.safetensors")
    assert res.exit_code == 2 and "lego" in res.output and not (tmp_path / "lego.safetensors").exists()

    res = invoke("generate", "a red circle", "--model", tiny_model_dir, "--adapters", file, "--domain", "clay",
                 "--frames", "4", "--out", tmp_path / "g")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "g" / "sequence.json").read_text())["settings"]["domain"] == "clay"
    res = invoke("generate", "a red circle", "--model", tiny_model_dir, "--adapters", file, "--domain", "clay",
                 "--adapter-mix", "clay=0.5,sand_art=0.5", "--frames", "4", "--out", tmp_path / "mix")
    assert res.exit_code == 0, res.output
    for bad in (["--domain", "origami"], ["--adapter-mix", "clay:1"], ["--adapter-mix", "lego=1"]):
        res = invoke("generate", "a red circle", "--model", tiny_model_dir, "--adapters", file, *bad,
                     "--frames", "4", "--out", tmp_path / "bad")
        assert res.exit_code == 2 and res.output.splitlines()[-1].startswith("procseq: error:"), res.output
        assert not (tmp_path / "bad").exists()
