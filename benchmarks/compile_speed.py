"""torch.compile before/after (``hardware.compile``): the default network eager vs compiled, on the CPU.

Opt-in (``python benchmarks/run_all.py --with compile_speed``, or run this file): inductor
compiles C++ kernels for a few minutes on 2 cores, longer than the rest of ``make bench`` allows.

- ``forward``: inference-mode forward, batch 32 (generation and batch analysis run this).
- ``training_step``: forward + backward + fused AdamW at batch 32 (what ``abrflow train`` with
  ``hardware.compile=true`` runs), compile time reported beside it.

    python benchmarks/compile_speed.py [--backend inductor] [--repeats 20] [--skip-train]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from _timing import add_common_arguments, environment, figure, rate, set_threads, timed, write_result
from train_speed import real_batch, step_fn

from abrflow.config import load_config
from abrflow.training.module import ABRLightningModule


def _forward(model, batch):
    t0 = torch.zeros(batch["signal"].shape[0], dtype=torch.long)
    return lambda: model(batch["signal"], t0, batch["static"])


def _first_call_seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (hardware.compile_backend)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-train", action="store_true", help="forward only (compiling backward takes longest)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    env = environment()
    start = time.perf_counter()
    cfg = load_config(None, [], environ={})
    batch = real_batch(cfg, args.batch)
    out: dict = {"backend": args.backend, "batch": args.batch}

    torch.manual_seed(0)
    model = ABRLightningModule(cfg).model.eval()
    compiled = torch.compile(model, backend=args.backend)
    with torch.inference_mode():
        eager_t = timed(_forward(model, batch), args.repeats, warmup=3)
        compile_s = _first_call_seconds(_forward(compiled, batch))
        compiled_t = timed(_forward(compiled, batch), args.repeats, warmup=2)
    out["forward"] = {"eager": rate(args.batch, eager_t), "compiled": rate(args.batch, compiled_t),
                      "compile_seconds": compile_s}

    if not args.skip_train:
        runs = {}
        for name in ("eager", "compiled"):
            torch.manual_seed(0)
            module = ABRLightningModule(cfg).train()
            if name == "compiled":
                module.model = torch.compile(module.model, backend=args.backend)
            optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4, fused=True)
            step = step_fn(module, optimizer, batch)
            first = _first_call_seconds(step)
            runs[name] = {**rate(args.batch, timed(step, args.repeats, warmup=2)), "first_step_seconds": first}
        out["training_step"] = runs

    f = out["forward"]
    figures = {"forward_speedup_compiled": figure(
        f["compiled"]["per_s"] / f["eager"]["per_s"], None, unit="×", best=f["compiled"]["per_s_best"] / f["eager"]["per_s_best"],
        what=f"inference forward, batch {args.batch}: {f['eager']['per_s']:.0f} → {f['compiled']['per_s']:.0f} samples/s "
             f"({args.backend}, {f['compile_seconds']:.0f} s to compile)")}
    before_after = [{"what": f"network forward, batch {args.batch}, inference mode: eager → torch.compile ({args.backend})",
                     "unit": "samples/s", "before": f["eager"]["per_s"], "after": f["compiled"]["per_s"],
                     "before_best": f["eager"]["per_s_best"], "after_best": f["compiled"]["per_s_best"]}]
    if "training_step" in out:
        s = out["training_step"]
        figures["training_step_speedup_compiled"] = figure(
            s["compiled"]["per_s"] / s["eager"]["per_s"], None, unit="×",
            best=s["compiled"]["per_s_best"] / s["eager"]["per_s_best"],
            what=f"training step, batch {args.batch}: {s['eager']['per_s']:.0f} → {s['compiled']['per_s']:.0f} samples/s "
                 f"(first compiled step {s['compiled']['first_step_seconds']:.0f} s)")
        before_after.append({"what": f"training step, batch {args.batch}: eager → torch.compile ({args.backend})",
                             "unit": "samples/s", "before": s["eager"]["per_s"], "after": s["compiled"]["per_s"],
                             "before_best": s["eager"]["per_s_best"], "after_best": s["compiled"]["per_s_best"]})
    result = {"environment": env, "figures": figures, **out, "before_after": before_after,
              "seconds": round(time.perf_counter() - start, 1)}
    write_result("compile_speed", result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
