"""The on-disk corpus (imagefolder layout), the torch Dataset and the montage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from procseq.data import dataset as ds
from procseq.data.synthetic import DOMAIN_PLAN, get_domain

TINY = dict(per_domain=2, test_per_domain=1, adapter_sizes={"clay": 3, "sand_art": 1}, progress=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("c") / "corpus"
    ds.make_corpus(out, **TINY)
    return out


def test_layout_and_metadata(corpus: Path) -> None:
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["counts"]["train"]["clay"] == 3 and manifest["counts"]["train"]["sand_art"] == 1
    for split in ("train", "test-seen", "test-compositional"):
        rows = [json.loads(line) for line in (corpus / split / "metadata.jsonl").read_text().splitlines()]
        assert len(rows) == sum(manifest["counts"][split].values())
        # imagefolder sees the grids listed in metadata.jsonl, and each row's frames under frames/
        assert sorted(p.name for p in (corpus / split).glob("*.png")) == sorted(r["file_name"] for r in rows)
        assert sorted(p.name for p in (corpus / split / "frames").glob("*.png")) == sorted(
            Path(f).name for r in rows for f in r["frames_file_names"])
        for r in rows:
            assert {"file_name", "prompt", "domain", "captions", "num_frames", "spec"} <= set(r)
            r["spec"] = json.loads(r["spec"])  # a JSON string: one metadata schema for every split
            assert len(r["captions"]) == r["num_frames"] == len(r["frames_file_names"])
            with Image.open(corpus / split / r["file_name"]) as im:
                side = 3 if r["num_frames"] == 9 else 2
                assert im.size == (32 * side, 32 * side)
            with Image.open(corpus / split / r["frames_file_names"][-1]) as im:
                assert im.size == (32, 32)
            held = get_domain(r["domain"]).held_out()
            assert (r["spec"]["composition"] in held) == (split == "test-compositional")
        domains = {r["domain"] for r in rows}
        unseen = {n for n, role in DOMAIN_PLAN.items() if role.role == "unseen"}
        assert (domains & unseen) == (set() if split == "train" else unseen)


def test_frames_on_disk_are_checkable(corpus: Path) -> None:
    import numpy as np

    from procseq.data.synthetic import Spec

    row = ds.load_split(corpus, "test-seen")[0]
    spec = Spec.from_dict(row["spec"])
    frame = np.asarray(Image.open(row["frame_paths"][-1]).convert("RGB"))
    assert get_domain(spec.domain).accuracy(frame, spec, spec.num_frames - 1) == 1.0


def test_grid_dataset(corpus: Path) -> None:
    data = ds.GridDataset(corpus, "train", domains=["lego", "painting"])
    item = data[0]
    assert item["grid"].shape == (3, 96, 96) and -1.0 <= item["grid"].min() and item["grid"].max() <= 1.0
    assert data.num_frames_list[:2] == [9, 9] and set(data.domains) <= {"lego", "painting"}
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    assert next(iter(loader))["grid"].shape == (2, 3, 96, 96)
    with pytest.raises(ValueError, match="known domains"):
        ds.GridDataset(corpus, "train", domains=["woodwork"])


def test_make_corpus_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = ds.generate

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(ds, "generate", flaky)
    with pytest.raises(RuntimeError):
        ds.make_corpus(tmp_path / "c", **TINY)
    assert list(tmp_path.iterdir()) == []


def test_make_corpus_refuses_to_clobber_and_bad_input(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    with pytest.raises(ValueError, match="overwrite=True"):
        ds.make_corpus(tmp_path / "c", **TINY)
    with pytest.raises(ValueError, match="multiple of 8"):
        ds.make_corpus(tmp_path / "d", frame_size=20, **TINY)
    with pytest.raises(FileNotFoundError, match="make_corpus"):
        ds.load_split(tmp_path, "train")
    with pytest.raises(ValueError, match="test-seen"):
        ds.load_split(tmp_path, "val")


def test_montage(tmp_path: Path) -> None:
    path = ds.montage(tmp_path / "m.png")
    with Image.open(path) as im:
        assert im.width > 9 * 64 and im.height >= len(DOMAIN_PLAN) * 64


def test_corpora_written_before_v2_still_load(corpus: Path, tmp_path: Path) -> None:
    import shutil

    old = tmp_path / "old"
    (old / "frames" / "train").mkdir(parents=True)
    (old / "train").mkdir()
    rows = []
    for line in (corpus / "train" / "metadata.jsonl").read_text().splitlines()[:2]:
        r = json.loads(line)
        shutil.copy(corpus / "train" / r["file_name"], old / "train" / r["file_name"])
        names = []
        for f in r.pop("frames_file_names"):
            shutil.copy(corpus / "train" / f, old / "frames" / "train" / Path(f).name)
            names.append(f"frames/train/{Path(f).name}")
        rows.append({**r, "frames": names, "spec": json.loads(r["spec"])})  # the v1 row format
    (old / "train" / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = ds.load_split(old, "train")
    assert [Path(p).is_file() for r in loaded for p in r["frame_paths"]] == [True] * sum(r["num_frames"] for r in rows)
    assert loaded[0]["spec"]["domain"] == rows[0]["domain"]


def test_workers_write_the_same_corpus_file_for_file(corpus: Path, tmp_path: Path) -> None:
    import filecmp

    parallel = tmp_path / "parallel"
    ds.make_corpus(parallel, workers=2, **TINY)
    files = sorted(p.relative_to(corpus) for p in corpus.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(parallel) for p in parallel.rglob("*") if p.is_file())
    _, mismatch, errors = filecmp.cmpfiles(corpus, parallel, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors
    with pytest.raises(ValueError, match="workers"):
        ds.make_corpus(tmp_path / "bad", workers=0, **TINY)
    assert not (tmp_path / "bad").exists()
