"""Pretext training streamed from shards on a GPU: pairs/s, how busy the GPU is, and where JPEGs
should be decoded. The script to run when a task has a GPU (it runs on a CPU too, for the record and
the tests, and says that no GPU was there).

On each device: the profile's pretext network (the paper's by default) trains for ``--steps`` steps of
``--pairs`` pairs streamed by ``--workers`` DataLoader workers, in the profile's precision. Reported:
pairs/s over the steps after the warm-up, the share of wall time the device spent computing
(*busy*: CUDA-event time of the steps over wall time; on a CPU, compute over wall), and the time
spent waiting for the next batch. Then JPEG decoding in photos/s: Pillow in one worker against
``torchvision.io.decode_jpeg`` on the device, batched.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import publish  # noqa: E402


def _shards(args) -> Path:
    """The collection to stream: ``--data``, or synthetic photos packed once under ``--work``."""
    from exifkit.data.shards import Item, pack
    from exifkit.data.synthetic import write_photos

    if args.data:
        return args.data
    photos = write_photos(args.work / "photos", args.photos, workers=min(4, os.cpu_count() or 1))
    files = sorted(photos.rglob("*.jpg"))[:args.photos]
    out = args.work / f"shards-{args.photos}"
    pack([Item(p, str(p.relative_to(photos))) for p in files], out, shard_size=args.shard_size,
         workers=min(8, os.cpu_count() or 1), progress=False)
    return out


def train_rate(device_name: str, shards_dir: Path, args) -> dict:
    import torch

    from exifkit.config import load_profile
    from exifkit.data.shards import Shards
    from exifkit.data.stream import PairStream, batch_loader
    from exifkit.model.heads import head_sizes
    from exifkit.pretext import PretextModel, pretext_step
    from exifkit.train import resolve_precision

    device = torch.device(device_name)
    shards = Shards.open(shards_dir)
    config = load_profile(args.profile, ROOT).pretext_config(batch_pairs=args.pairs, workers=args.workers)
    precision = resolve_precision(config.precision, device)
    model = PretextModel(config.extractor, head_sizes({k: len(v.classes) for k, v in shards.vocabularies().items()}))
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    stream = PairStream(shards, batch_pairs=config.batch_pairs, n_patches=config.n_patches,
                        patch_size=config.extractor.patch_size, max_side=config.max_side, seed=0, workers=args.workers,
                        buffer=config.shuffle_buffer)
    loader = iter(batch_loader(stream, pin_memory=device.type == "cuda"))
    cuda = device.type == "cuda"
    waits, computes, wall0 = [], [], None
    for step in range(args.steps + args.warmup):
        t = time.perf_counter()
        batch = next(loader)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        waited = time.perf_counter() - t
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        t = time.perf_counter()
        pretext_step(model, optimizer, batch, config, precision)
        if cuda:
            end.record()
            end.synchronize()
            computed = start.elapsed_time(end) / 1000
        else:
            computed = time.perf_counter() - t
        if step == args.warmup:
            wall0 = time.perf_counter() - waited - computed
        if step >= args.warmup:
            waits.append(waited)
            computes.append(computed)
    wall = time.perf_counter() - wall0
    del loader
    return {"device": device_name, "gpu": torch.cuda.get_device_name(device) if cuda else None,
            "precision": precision, "pairs_per_step": config.batch_pairs, "workers": args.workers,
            "pairs_per_s": round(args.steps * config.batch_pairs / wall, 2),
            "busy_fraction": round(sum(computes) / wall, 3), "waiting_for_data_fraction": round(sum(waits) / wall, 3),
            "step_s": round(sum(computes) / len(computes), 4)}


def decode_rates(device_name: str, shards_dir: Path, args) -> dict:
    """Photos/s decoding the collection's JPEG bytes with Pillow (one process) and with torchvision on
    ``device_name`` (batched, on the device when it is a GPU)."""
    import torch
    from torchvision.io import decode_jpeg

    from exifkit.data.images import decode_rgb
    from exifkit.data.shards import Shards, iter_shard

    datas = []
    for path in Shards.open(shards_dir).paths:
        for record, data in iter_shard(path):
            if record["format"] in ("JPEG", "MPO"):
                datas.append(data)
            if len(datas) >= args.decode_photos:
                break
        if len(datas) >= args.decode_photos:
            break
    t = time.perf_counter()
    for data in datas:
        decode_rgb(data, "bench")
    pillow = len(datas) / (time.perf_counter() - t)
    tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    device = torch.device(device_name)
    decode_jpeg(tensors[:8], device=device)  # warm-up (the CUDA decoder is created on first use)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    for i in range(0, len(tensors), 64):
        decode_jpeg(tensors[i:i + 64], device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"photos": len(datas), "pillow_photos_per_s": round(pillow, 1),
            f"torchvision_{device.type}_photos_per_s": round(len(datas) / (time.perf_counter() - t), 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="a packed collection (default: synthetic photos)")
    parser.add_argument("--photos", type=int, default=4000, help="synthetic photos to pack without --data")
    parser.add_argument("--shard-size", type=int, default=250)
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("EXIFKIT_CACHE") or Path.home() / ".cache"
                                                          / "exifkit") / "bench" / "gpu_training")
    parser.add_argument("--profile", default="paper", help="whose pretext network and settings (default paper)")
    parser.add_argument("--pairs", type=int, default=64, help="pairs per step (the authors': 64 per GPU)")
    parser.add_argument("--workers", type=int, default=max(1, min(12, (os.cpu_count() or 2) - 2)))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--decode-photos", type=int, default=512)
    parser.add_argument("--devices", nargs="*", default=None, help="default: cuda when there is one, else cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    args = parser.parse_args(argv)

    import torch

    devices = args.devices or (["cuda"] if torch.cuda.is_available() else ["cpu"])
    shards_dir = _shards(args)
    report = {"cuda_available": torch.cuda.is_available(), "cpus": os.cpu_count(), "torch": torch.__version__,
              "results": {}}
    if not torch.cuda.is_available():
        report["note"] = "no GPU on this machine: CPU figures only"
    for name in devices:
        report["results"][name] = {"training": train_rate(name, shards_dir, args), "decoding": decode_rates(name, shards_dir, args)}
        print(f"{name}: {report['results'][name]}", file=sys.stderr)
    publish(report, args.out, "gpu_training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
