"""CLIP scores from a tiny random CLIP checkpoint written to a temp folder (no download)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from procseq.sequence import Sequence

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character table."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_tiny_clip(folder: Path) -> Path:
    """A random CLIPModel + byte-level CLIPTokenizer + CLIPImageProcessor saved to `folder`."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    chars = list(bytes_to_unicode().values())
    vocab = {tok: i for i, tok in enumerate(chars + [c + "</w>" for c in chars])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tok_dir = folder / "tok"
    tok_dir.mkdir(parents=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"))
    text = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                vocab_size=len(vocab), max_position_embeddings=77,
                bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"], pad_token_id=1)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  image_size=32, patch_size=8)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    out = folder / "clip"
    model.save_pretrained(out)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


def _seq() -> Sequence:
    frames = [Image.new("RGB", (40, 40), (40 * i, 200 - 30 * i, 90)) for i in range(4)]
    return Sequence(frames, [f"step {i} of the red cube" for i in range(4)], "a red cube", "lego")


def test_clip_scores_offline(clip_dir: Path):
    from procseq.eval.clip_score import ClipScorer

    scorer = ClipScorer(clip_dir)
    seq = _seq()
    s = scorer.score_sequence(seq, reference=seq.frames)
    assert 0.0 <= s.text_frame <= 100.0 and 0.0 <= s.prompt_final <= 100.0
    assert -1.0 <= s.adjacent <= 1.0
    assert s.reference == pytest.approx(1.0, abs=1e-5)  # every frame against itself
    assert scorer.score_sequence(seq, reference=seq.frames[-1]).reference == pytest.approx(1.0, abs=1e-5)
    assert scorer.score_sequence(seq).reference is None
    # deterministic, and the pair API agrees with the sequence API
    pairs = scorer.text_image(seq.captions, seq.frames)
    assert sum(pairs) / 4 == pytest.approx(s.text_frame, abs=1e-4)
    assert scorer.image_image(seq.frames[:-1], seq.frames[1:]) == pytest.approx(
        [scorer.image_image([a], [b])[0] for a, b in zip(seq.frames[:-1], seq.frames[1:])], abs=1e-5)
    long_text = "word " * 200  # truncated to the model's 77 positions instead of failing
    assert len(scorer.text_image([long_text], seq.frames[:1])) == 1


def test_clip_errors(clip_dir: Path, tmp_path: Path):
    from procseq.eval.clip_score import ClipScorer

    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        ClipScorer(tmp_path / "missing")
    scorer = ClipScorer(clip_dir)
    with pytest.raises(ValueError, match="one reference image per frame"):
        scorer.score_sequence(_seq(), reference=_seq().frames[:2])
    with pytest.raises(ValueError):
        scorer.text_image(["a"], [])
