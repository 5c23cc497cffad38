"""Model and dataset cards: the README.md with the YAML header the Hugging Face Hub reads.

:func:`model_card` is what :meth:`ProcessPipeline.save_pretrained` writes into a folder that has none (the embedded
model ships its own, with its scores); :func:`dataset_card` is what ``procseq data make`` writes beside a corpus.
"""

from __future__ import annotations

from typing import Any, Iterable

LICENSE = "apache-2.0"

SPLIT_ROLES = {
    "train": "training sequences of the base domains",
    "test-seen": "held-out sequences whose attribute combinations also occur in train",
    "test-compositional": "attribute combinations absent from train (the main held-out measure)",
    "test-length": "lengths held out of train (7 and 13 frames)",
    "test-paraphrase": "held-out specs worded only with the test pool of templates and synonyms",
}
"""What each corpus split is for (the adapter domains, imbalanced on purpose, and the never-trained domains are
rows of ``train`` and the test splits with their own role in ``manifest.json``'s ``plan``)."""


def _yaml_list(key: str, values: Iterable[str]) -> list[str]:
    return [f"{key}:"] + [f"- {v}" for v in values]


def model_card(name: str, domains: Iterable[str], adapter_domains: Iterable[str] = (),
               settings: dict[str, Any] | None = None, base_model: str | None = None) -> str:
    """A model card for a procseq diffusers folder: what it is, its domains, its native settings, how to load it."""
    domains, adapter_domains, settings = list(domains), list(adapter_domains), dict(settings or {})
    header = ["---", f"license: {LICENSE}", "library_name: diffusers", "pipeline_tag: text-to-image",
              *_yaml_list("tags", ["procseq", "flux", "procedural-sequence", "diffusers:ProcessPipeline"])]
    if base_model:
        header.append(f"base_model: {base_model}")
    header.append("---")
    rows = [f"| {k} | {v} |" for k, v in sorted(settings.items()) if k != "domains"]
    body = [
        f"# {name}", "",
        "A [procseq](https://pypi.org/project/procseq/) model: it generates *procedural sequences* (the step-by-step "
        "making of something, one frame and one caption per step) with diffusers' `FluxTransformer2DModel`.", "",
        "## Domains", "",
        f"- base: {', '.join(domains) if domains else 'any (the model takes any domain name)'}",
        f"- adapters (`adapters/adapters.safetensors`): {', '.join(adapter_domains) if adapter_domains else 'none'}",
        "", "## Use", "",
        "```python",
        "from diffusers import DiffusionPipeline",
        "import procseq  # registers ProcessPipeline with diffusers",
        "",
        'pipe = DiffusionPipeline.from_pretrained("PATH")  # a procseq.ProcessPipeline',
        f'out = pipe("a red lego tower", domain="{domains[0] if domains else "lego"}", frames=9)',
        "out.frames[0], out.captions[0], out.images[0]  # frames, step captions, the serpentine grid",
        "```", "",
        "Without procseq imported: `DiffusionPipeline.from_pretrained(PATH, custom_pipeline=\"pipeline\", "
        "trust_remote_code=True)`. Stock `FluxPipeline.from_pretrained(PATH)` loads the base components.", "",
    ]
    if rows:
        body += ["## Native settings (`procseq.json`)", "", "| setting | value |", "|---|---|", *rows, ""]
    return "\n".join(header + [""] + body)


def dataset_card(splits: list[str], manifest: dict[str, Any] | None = None) -> str:
    """A corpus card: YAML ``configs`` that let ``datasets.load_dataset(DIR)`` load each split by name, then the
    features, the splits and how the ground truth is made."""
    manifest = manifest or {}
    counts = manifest.get("counts", {})
    lines = ["---", f"license: {LICENSE}", *_yaml_list("task_categories", ["text-to-image"]),
             *_yaml_list("tags", ["procseq", "synthetic", "procedural-sequence"]),
             "configs:", "- config_name: default", "  data_files:"]
    for split in splits:
        lines += [f"  - split: {split.replace('-', '_')}", f"    path: {split}/**"]
    lines += ["---", "", "# procseq synthetic corpus", "",
              "Procedurally rendered step-by-step sequences (`procseq data make`): one generator per domain, each with "
              "its own process logic. Every sequence stores the structured spec it was rendered from, so generated "
              "frames can be scored against the truth (procseq's checker reads the attributes back from pixels).", "",
              "## Features (one row per sequence, `<split>/metadata.jsonl`)", "",
              "| column | meaning |", "|---|---|",
              "| `image` (`file_name`) | the serpentine grid of all frames (row 0 left to right, row 1 right to left...) |",
              "| `frames` (`frames_file_names`) | the frames, first step first |",
              "| `prompt` | the finished artifact in words (composed from the spec's attributes) |",
              "| `captions` | one caption per step |", "| `domain` | the process domain |",
              "| `num_frames` | number of steps |",
              "| `spec` | the ground truth as JSON: attributes and the per-step state |",
              "| `prompts`, `template` | with paraphrased wording: every phrasing drawn, and their template ids |", "",
              "## Splits", "", "| split | sequences | what it holds |", "|---|---|---|"]
    lines += [f"| {s} | {counts.get(s, '')} | {SPLIT_ROLES.get(s, '')} |" for s in splits]
    settings = {k: manifest[k] for k in ("seed", "frame_size", "per_domain", "test_per_domain", "lengths", "wording",
                                         "phrasings") if k in manifest}
    lines += ["", "## How it was made", "",
              "The prompt is composed from attributes (objects, colours, sizes, positions, counts), so the text decides "
              "the picture; the renderer draws each step's state; nothing is sampled from a model. Settings: "
              + (", ".join(f"{k}={v}" for k, v in settings.items()) or "see manifest.json") + ". The same settings "
              "give the same files (every sequence has its own seed).", "",
              "## Licence", "", f"{LICENSE}: the corpus is generated by procseq's code, with no third-party images.", ""]
    return "\n".join(lines)


__all__ = ["dataset_card", "model_card"]
