#!/usr/bin/env python3
"""Measure the CPU thread policy: one process vs two concurrent ones, 1 or N threads each.

    python scripts/bench_threads.py [--steps 20]

Times a UNet training step (forward + backward, batch 8, 16x16x4 latents, a few M parameters,
the size class of the embedded model) and prints a Markdown table. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def worker(threads: int, steps: int) -> None:
    import torch
    from diffusers import UNet2DConditionModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(64, 128, 128),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    opt = torch.optim.Adam(unet.parameters(), 1e-4)
    x, c = torch.randn(8, 4, 16, 16), torch.randn(8, 16, 64)
    t = torch.randint(0, 1000, (8,))

    def step():
        opt.zero_grad()
        unet(x, t, encoder_hidden_states=c).sample.pow(2).mean().backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    print(json.dumps({"ms_per_step": (time.perf_counter() - t0) / steps * 1000}))


def launch(threads: int, procs: int, steps: int) -> list[float]:
    cmd = [sys.executable, __file__, "--worker", str(threads), "--steps", str(steps)]
    ps = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1])["ms_per_step"] for p in ps]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", type=int)
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.steps)
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{cores} cores; UNet training step, batch 8, 16x16x4 latents\n")
    print("| processes | threads each | ms per step (each process) | steps/s, all processes |")
    print("|---|---|---|---|")
    for procs, threads in ((1, 1), (1, cores), (2, 1), (2, cores)):
        ms = launch(threads, procs, a.steps)
        print(
            f"| {procs} | {threads} | {', '.join(f'{m:.0f}' for m in ms)} | {sum(1000 / m for m in ms):.2f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
