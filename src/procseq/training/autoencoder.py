"""Stage 1 of procseq-tiny: train the AutoencoderKL on corpus frames, then set its latent scale/shift.

Loss: L1 + MSE reconstruction of the posterior sample plus a small KL term (as in the LDM/FLUX VAEs,
without the adversarial and perceptual terms, which flat synthetic frames do not need). Resumable:
model + optimizer + step are saved every ``checkpoint_every`` steps and all randomness is a function
of ``(seed, step)``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from procseq.outputs import atomic_dir
from procseq.training.checkpoints import STATE, check_finite_loss, verify_checkpoint, write_checkpoint_dir
from procseq.training.config import AutoencoderConfig
from procseq.training.trainer import truncate_log


def random_crops(frames: torch.Tensor, n: int, crop: int, generator: torch.Generator, align: int = 4) -> torch.Tensor:
    """`n` random `crop` x `crop` patches of random frames, offsets on an `align` grid (the latent stride).

    The autoencoder is convolutional, so training on crops generalises to whole frames at a fraction of
    the cost (the full-resolution convolutions dominate the time on a CPU).
    """
    size = frames.shape[-1]
    if crop >= size:
        return frames[torch.randint(len(frames), (n,), generator=generator)]
    idx = torch.randint(len(frames), (n,), generator=generator)
    ys = torch.randint((size - crop) // align + 1, (n,), generator=generator) * align
    xs = torch.randint((size - crop) // align + 1, (n,), generator=generator) * align
    return torch.stack([frames[i, :, y : y + crop, x : x + crop] for i, y, x in zip(idx, ys, xs)])


def autoencoder_loss(vae: AutoencoderKL, x: torch.Tensor, generator: torch.Generator, kl_weight: float):
    """Reconstruction (L1 + MSE) of a posterior sample, plus `kl_weight` * KL; returns (loss, recon_mse)."""
    posterior = vae.encode(x).latent_dist
    eps = torch.randn(posterior.mean.shape, generator=generator).to(posterior.mean)
    z = posterior.mean + posterior.std * eps
    recon = vae.decode(z).sample.float()
    mse = F.mse_loss(recon, x)
    loss = F.l1_loss(recon, x) + mse + kl_weight * posterior.kl().mean()
    return loss, mse


@torch.no_grad()
def latent_statistics(vae: AutoencoderKL, frames: torch.Tensor, batch_size: int = 256) -> tuple[float, float]:
    """(shift, scale) so that ``(z - shift) * scale`` has zero mean and unit variance over `frames`."""
    zs = torch.cat([vae.encode(frames[i : i + batch_size]).latent_dist.mode()
                    for i in range(0, len(frames), batch_size)])
    return zs.mean().item(), 1.0 / zs.std().item()


def train_autoencoder(vae: AutoencoderKL, frames: torch.Tensor, cfg: AutoencoderConfig, out_dir: Path,
                      progress: bool = True) -> AutoencoderKL:
    """Train `vae` on `frames` ``(N, 3, S, S)`` in [-1, 1]; resumes from ``out_dir/state``; saves ``out_dir/vae``."""
    out_dir = Path(out_dir)
    final = out_dir / "vae"
    if (final / "config.json").is_file():
        return AutoencoderKL.from_pretrained(final)
    state_dir = out_dir / "state"
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    step = 0
    if state_dir.is_dir():
        why = verify_checkpoint(state_dir)
        if why is not None:
            raise ValueError(f"The autoencoder state {state_dir} is unusable ({why}); move it aside to restart stage 1.")
        vae.load_state_dict(load_file(state_dir / "model.safetensors"))
        opt.load_state_dict(torch.load(state_dir / "optimizer.pt", weights_only=True))
        step = json.loads((state_dir / "trainer_state.json").read_text())["step"]
    vae.train()
    log = out_dir / "log.jsonl"
    out_dir.mkdir(parents=True, exist_ok=True)
    truncate_log(log, step)
    start = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=step, desc="autoencoder", disable=not progress)
    while step < cfg.steps:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        batch = random_crops(frames, cfg.batch_size, cfg.crop, g)
        lr = cfg.lr * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * (1 - step / cfg.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16 and frames.device.type == "cpu"):
            loss, mse = autoencoder_loss(vae, batch, g, cfg.kl_weight)
        opt.zero_grad(set_to_none=True)
        check_finite_loss(loss.item(), step + 1, out_dir)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            psnr = 10 * torch.log10(4.0 / mse.detach()).item()  # pixels in [-1, 1]: peak-to-peak 2
            bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{psnr:.1f}")
            with log.open("a") as f:
                f.write(json.dumps({"step": step, "loss": loss.item(), "psnr": psnr,
                                    "elapsed_s": round(time.perf_counter() - start, 2)}) + "\n")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            def write(tmp: Path, step: int = step) -> None:
                tmp.mkdir(parents=True)
                save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, tmp / "model.safetensors")
                torch.save(opt.state_dict(), tmp / "optimizer.pt")
                (tmp / STATE).write_text(json.dumps({"step": step}))

            write_checkpoint_dir(state_dir, write)  # atomic: the previous state survives a kill or a full disk
    bar.close()
    vae.eval()
    shift, scale = latent_statistics(vae, frames)
    vae.register_to_config(shift_factor=shift, scaling_factor=scale)
    with atomic_dir(final) as tmp:  # config.json is what marks it done: never without its weights
        vae.save_pretrained(tmp)
    return vae
