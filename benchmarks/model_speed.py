"""Speed of the default network on this machine: training step, forward pass and generation.

The predecessor's 32.7M-parameter network trained at 6.8 samples/s (batch 32, forward 31.6 samples/s)
on the project's 2-core CPU; the goal is ≥ 20× that (≥ 136 samples/s) for a full training step as
training runs it: one forward on the doubled batch [x_t; x_0] (diffusion + t = 0 heads), backward,
AdamW step (``fused=True``; torch's default for-loop AdamW is measured too). Medians of repeats
after warm-up; written to benchmarks/results/model_speed.json. Generation: waveforms per second at
``--gen-batch`` (default 32) for DDPM-1000, DDIM-50 and DPM-Solver++-20.

    python benchmarks/model_speed.py [--config configs/large.yaml] [--threads N] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from abrflow.config import load_config
from abrflow.diffusion import ABRDiffusion
from abrflow.models.unet import build_model

RESULTS = Path(__file__).resolve().parent / "results" / "model_speed.json"
PREDECESSOR = {"params": 32_700_000, "train_samples_per_s": 6.8, "forward_samples_per_s": 31.6}


def _seconds(fn, repeats: int, warmup: int = 2) -> tuple[float, float]:
    """(median, fastest) wall seconds of ``fn``: the fastest repeat shows what the machine can do when
    nothing else competes for its two cores (shared machines: the median moves with their load)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def _batch(batch: int, length: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    static = torch.randn(batch, 4, generator=generator)
    static[::7, 0] = float("nan")  # some unknown ages, as in clinical exports
    return {
        "x0": torch.randn(batch, 1, length, generator=generator) * 0.3,
        "static": static,
        "hearing_loss": torch.randint(0, 5, (batch,), generator=generator),
        "threshold_db": torch.rand(batch, generator=generator) * 80,
        "v_present": (torch.rand(batch, generator=generator) < 0.75).float(),
        "v_latency_ms": 5 + 4 * torch.rand(batch, generator=generator),
    }


def train_step_fn(model, diffusion, optimizer, b, with_heads: bool, generator):
    """One optimisation step as training runs it (losses simplified, costs equal)."""
    batch = b["x0"].shape[0]

    def step():
        t = diffusion.sample_timesteps(batch, generator)
        noise = torch.randn(b["x0"].shape, generator=generator)
        x_t = diffusion.add_noise(b["x0"], noise, t)
        if with_heads:  # doubled batch: rows [batch:] are the clean recordings at t = 0, no conditions
            out = model(torch.cat([x_t, b["x0"]]), torch.cat([t, torch.zeros_like(t)]),
                        torch.cat([b["static"], b["static"]]),
                        torch.cat([b["hearing_loss"], torch.full_like(b["hearing_loss"], -1)]),
                        torch.cat([b["threshold_db"], torch.full_like(b["threshold_db"], float("nan"))]))
            pred, heads = out.sample[:batch], out.heads[batch:]
        else:
            out = model(x_t, t, b["static"], b["hearing_loss"], b["threshold_db"])
            pred, heads = out.sample, None
        mse = (pred - diffusion.target(b["x0"], noise, t)).square().mean(dim=(1, 2))
        loss = (diffusion.loss_weight(t) * mse).mean()
        if heads is not None:
            lat = model.heads.normalise("v_latency_ms", b["v_latency_ms"])
            loss = loss + F.binary_cross_entropy_with_logits(heads.v_present_logit, b["v_present"])
            loss = loss + F.gaussian_nll_loss(model.heads.normalise("v_latency_ms", heads.v_latency_ms), lat,
                                              (2 * model.heads.normalise("v_latency_log_std",
                                                                         heads.v_latency_log_std)).exp())
            loss = loss + F.cross_entropy(heads.hearing_loss_logits, b["hearing_loss"].long())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=None)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--gen-batch", type=int, default=32)
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("overrides", nargs="*", help="config overrides, section.key=value")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(args.config, args.overrides, environ={})
    model = build_model(cfg)
    diffusion = ABRDiffusion.from_config(cfg.diffusion)
    length = cfg.data.signal_length
    gen = torch.Generator().manual_seed(0)
    b = _batch(args.batch, length, gen)
    # fused=True: one kernel per step instead of about ten ops per parameter tensor; torch's default
    # (for-loop) AdamW costs about 50 ms per step on the 2-core CPU, a quarter of the whole step
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-5, fused=True)
    n_params = sum(p.numel() for p in model.parameters())
    result: dict = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(), "config": args.config,
        "overrides": args.overrides, "params": n_params, "batch": args.batch, "signal_length": length,
        "architecture": OmegaConf.to_container(cfg.model.architecture),
        "load_average_before": os.getloadavg()[0],
    }
    model.train()
    default = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-5)
    for key, heads, opt in [("train_samples_per_s", True, optimizer),
                            ("train_diffusion_only_samples_per_s", False, optimizer),
                            ("train_samples_per_s_default_adamw", True, default)]:
        median, best = _seconds(train_step_fn(model, diffusion, opt, b, heads, gen), args.repeats)
        result[key], result[f"{key}_best"] = args.batch / median, args.batch / best
    model.eval()
    t = diffusion.sample_timesteps(args.batch, gen)
    with torch.inference_mode():
        median, best = _seconds(lambda: model(b["x0"], t, b["static"]), args.repeats)
    result["forward_samples_per_s"], result["forward_samples_per_s_best"] = args.batch / median, args.batch / best

    if not args.skip_generation:
        static = b["static"][: args.gen_batch].repeat(-(-args.gen_batch // args.batch), 1)[: args.gen_batch]
        result["generation_batch"] = args.gen_batch
        for name, sampler, steps, repeats in [("ddpm_1000", "ddpm", 1000, 1), ("ddim_50", "ddim", 50, 3),
                                              ("dpm_solver_20", "dpm_solver", 20, 3)]:
            median, _ = _seconds(lambda s=sampler, n=steps: diffusion.sample(
                model, static, sampler=s, steps=n, generator=gen), repeats, warmup=0 if steps > 100 else 1)
            result[f"generation_{name}_waveforms_per_s"] = args.gen_batch / median
    result["load_average_after"] = os.getloadavg()[0]
    result["speedup_train_vs_predecessor"] = result["train_samples_per_s"] / PREDECESSOR["train_samples_per_s"]
    result["goal_train_samples_per_s"] = 20 * PREDECESSOR["train_samples_per_s"]
    result["predecessor"] = PREDECESSOR

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
