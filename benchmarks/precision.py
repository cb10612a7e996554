"""bf16 against fp32 training: throughput of both trainers' steps, and whether the loss curves agree.

Both runs use the fast path of the paper network on the demo photos, through the trainers' own step
functions (as ``training.py``), once in float32 and once under bf16 autocast. Then a short pretext run
is repeated from the same seed in both precisions, plus a second float32 run from another seed: the
bf16 curve *follows* the fp32 one when its distance to it is within the distance between the two fp32
runs (run-to-run noise). Curves are smoothed over a few steps before comparing.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, run  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def add_arguments(parser):
    import training

    training.add_arguments(parser)
    parser.add_argument("--curve-steps", type=int, default=40, help="steps of the loss-curve runs")
    parser.add_argument("--curve-pairs", type=int, default=4, help="pairs per step of the loss-curve runs")


def _curve(photos, precision: str, seed: int, steps: int, pairs: int) -> list[float]:
    import torch

    from exifkit.model.heads import head_sizes
    from exifkit.pretext import PretextConfig, PretextModel, make_batch, pair_batch, pretext_step

    torch.manual_seed(seed)
    config = PretextConfig(batch_pairs=pairs, seed=seed)
    model = PretextModel(config.extractor, head_sizes({k: len(v.classes)
                                                       for k, v in photos.labels.vocabularies.items()})).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    losses = []
    for step in range(steps):
        first, second, seeds = pair_batch(len(photos), step, pairs, seed)
        batch = make_batch(photos, first, second, seeds, config.n_patches, config.extractor.patch_size)
        losses.append(float(pretext_step(model, optimizer, batch, config, precision)[0]))
    return losses


def workload(precision: str, device: str, args) -> dict:
    from exifkit.config import data_store, load_profile
    from exifkit.exif.read import read_many
    from exifkit.pretext import load_photos

    import training

    numbers = training.workload("fast", device, args, precision)
    if device == "cpu":
        store = data_store(load_profile("demo", ROOT))
        cameras = [store.path(e) for e in store.manifest if e.kind == "camera"][:64]
        photos = load_photos(cameras, read_many(cameras), max_side=1024)
        numbers["curve_seed0"] = _curve(photos, precision, 0, args.curve_steps, args.curve_pairs)
        if precision == "fp32":
            numbers["curve_seed1"] = _curve(photos, precision, 1, args.curve_steps, args.curve_pairs)
    return numbers


def compare_curves(by_mode: dict) -> dict:
    """Mean distance between smoothed loss curves: bf16 vs fp32 (same seed), fp32 vs fp32 (two seeds)."""
    import numpy as np

    if "curve_seed0" not in by_mode.get("fp32", {}) or "curve_seed0" not in by_mode.get("bf16", {}):
        return {}

    def smooth(curve):
        curve = np.asarray(curve, dtype=float)
        width = max(1, min(5, len(curve) // 4))
        return np.convolve(curve, np.ones(width) / width, mode="valid")

    fp32, fp32_other, bf16 = (smooth(by_mode["fp32"]["curve_seed0"]), smooth(by_mode["fp32"]["curve_seed1"]),
                              smooth(by_mode["bf16"]["curve_seed0"]))
    precision_gap = float(np.mean(np.abs(bf16 - fp32)))
    noise = float(np.mean(np.abs(fp32_other - fp32)))
    return {"bf16_vs_fp32_mean_abs_loss_gap": round(precision_gap, 4),
            "fp32_seed0_vs_seed1_mean_abs_loss_gap": round(noise, 4),
            "loss_first_last_fp32": [round(float(fp32[0]), 3), round(float(fp32[-1]), 3)],
            "loss_first_last_bf16": [round(float(bf16[0]), 3), round(float(bf16[-1]), 3)],
            "bf16_follows_fp32_within_noise": bool(precision_gap <= noise)}


if __name__ == "__main__":
    run("precision", workload, {"pretext_pairs_per_s": "pair/s", "binary_images_per_s": "img/s"}, add_arguments,
        modes=PRECISIONS, compare=compare_curves,
        smoke={"pairs": 1, "binary_images": 2, "curve_steps": 4, "curve_pairs": 1})
