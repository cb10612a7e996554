"""The streaming data path at two dataset sizes: memory must not grow with the number of photos.

Writes synthetic camera-like photos (``exifkit.data.synthetic``), packs 1,000 and 20,000 of them into
shards, then, each in a fresh child process:

- streams pretext batches with no model for 0, 1 and 2 DataLoader workers (photos decoded per second);
- trains the profile's pretext network for 50 steps from each packed set with 2 workers (pairs/s,
  and the peak resident memory of the trainer and of its largest worker).

It also packs and streams real camera JPEGs (the extended profile's, else the demo's), whose rates in
MB/s carry over to full-resolution photos. Then extrapolates to the paper's 900,000 photos on 8 GPUs:
shard count and size, packing time at the measured MB/s, and the workers per GPU that decoding needs
to keep up with a GPU step time (given with --gpu-step-s, else the assumption printed beside it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _tree_pss_mb(pid: int) -> float:
    """Proportional set size of a process and all its descendants (DataLoader workers share pages with
    the trainer they were forked from; PSS counts each shared page once in all), Linux only."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        stack += children.get(current, [])
        try:
            with open(f"/proc/{current}/smaps_rollup") as fh:
                total += next(int(line.split()[1]) for line in fh if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return total / 1024


def child_stream(args) -> dict:
    """Photos/s of the data path alone: batches drawn and decoded, no model."""
    from exifkit.data.shards import Shards
    from exifkit.data.stream import PairStream, batch_loader

    stream = PairStream(Shards.open(args.shards), batch_pairs=args.pairs, n_patches=16, patch_size=64, max_side=512,
                        seed=0, workers=args.workers)
    loader = iter(batch_loader(stream))
    t0 = time.perf_counter()
    next(loader)  # workers started and their buffers filled
    first = time.perf_counter() - t0
    t1 = time.perf_counter()
    for _ in range(args.batches):
        next(loader)
    seconds = time.perf_counter() - t1
    del loader
    return {"workers": args.workers, "first_batch_s": round(first, 2),
            "photos_per_s": round(2 * args.pairs * args.batches / seconds, 1)}


def child_train(args) -> dict:
    """Pretext training streamed from shards: pairs/s over the steps after the first, peak memory."""
    import tempfile

    import pandas as pd

    from exifkit.config import load_profile
    from exifkit.data.shards import Shards
    from exifkit.pretext import train_pretext

    config = load_profile(args.profile, ROOT).pretext_config(steps=args.steps, workers=args.workers, log_every=1,
                                                             checkpoint_every=args.steps, validation_fraction=0.0)
    with tempfile.TemporaryDirectory() as out:
        result = train_pretext(config, Shards.open(args.shards), out, progress=False)
        log = pd.read_csv(Path(out) / "metrics.csv")
    steady = log["seconds"].iloc[-1] - log["seconds"].iloc[0]
    pairs = config.batch_pairs * (len(log) - 1)
    return {"steps": result.steps, "pairs_per_step": config.batch_pairs, "pairs_per_s": round(pairs / steady, 2),
            "seconds": round(result.seconds, 1)}


def child_memory(args) -> dict:
    """The in-memory path on the same photos (decoded once into one process), for the comparison."""
    import tempfile

    import pandas as pd

    from exifkit.config import load_profile
    from exifkit.data.shards import Shards
    from exifkit.exif.read import read_many
    from exifkit.pretext import load_photos, train_pretext

    shards = Shards.open(args.shards)
    photos_root = Path(shards.index["source"])
    files = [photos_root / name for name in _names(shards)]
    config = load_profile(args.profile, ROOT).pretext_config(steps=args.steps, log_every=1, checkpoint_every=args.steps,
                                                             validation_fraction=0.0)
    t0 = time.perf_counter()
    photos = load_photos(files, read_many(files), config.max_side)
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        train_pretext(config, photos, out, progress=False)
        log = pd.read_csv(Path(out) / "metrics.csv")
    steady = log["seconds"].iloc[-1] - log["seconds"].iloc[0]
    return {"load_s": round(load_s, 1), "pairs_per_s": round(config.batch_pairs * (len(log) - 1) / steady, 2)}


def _names(shards) -> list[str]:
    from exifkit.data.shards import iter_shard

    return [record["name"] for path in shards.paths for record, _ in iter_shard(path)]


def _child(kind: str, **kw) -> dict:
    """Run one measurement in a fresh process; its peak memory is the largest PSS of its process tree,
    sampled every 0.2 s."""
    import tempfile

    cmd = [sys.executable, __file__, "--child", kind] + [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, _tree_pss_mb(proc.pid))
            time.sleep(0.2)
        out = proc.stdout.read()
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{kind} child failed:\n{err.read()[-3000:]}")
    return {**json.loads(out.strip().splitlines()[-1]), "peak_mb": round(peak, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 20000], help="the two collection sizes")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the photos and shards (default $EXIFKIT_CACHE/bench/data_path)")
    parser.add_argument("--profile", default="demo", help="whose pretext network and batch size train (default demo)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the training runs")
    parser.add_argument("--pairs", type=int, default=16, help="pairs per batch of the data-path-only runs")
    parser.add_argument("--batches", type=int, default=20, help="batches timed in the data-path-only runs")
    parser.add_argument("--gpu-step-s", type=float, default=None,
                        help="seconds per pretext step of 64 pairs on one GPU, for the extrapolation "
                             "(default: the assumption stated in the output)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    parser.add_argument("--child", choices=("stream", "train", "memory"), help=argparse.SUPPRESS)
    parser.add_argument("--shards", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps({"stream": child_stream, "train": child_train, "memory": child_memory}[args.child](args)))
        return 0

    from exifkit.data.shards import Item, pack
    from exifkit.data.synthetic import write_photos

    work = args.work or Path(os.environ.get("EXIFKIT_CACHE") or Path.home() / ".cache" / "exifkit") / "bench" / "data_path"
    small, large = sorted(args.sizes)
    t0 = time.perf_counter()
    photos = write_photos(work / "photos", large, workers=2)
    files = sorted(photos.rglob("*.jpg"))[:large]
    report = {"machine": {"cpus": os.cpu_count()}, "generate_s": round(time.perf_counter() - t0, 1), "sizes": {}}
    import shutil

    for old in work.glob("shards-*"):  # packing is measured from scratch each time (the photos are kept)
        shutil.rmtree(old)
    for n in (small, large):
        shards = work / f"shards-{n}"
        t = time.perf_counter()
        packed = pack([Item(p, str(p.relative_to(photos))) for p in files[:n]], shards, workers=2, source=str(photos),
                      progress=False)
        seconds = time.perf_counter() - t
        size = sum(p.stat().st_size for p in shards.glob("*.tar"))
        report["sizes"][n] = {"pack_s": round(seconds, 1), "shards": packed.shards, "packed_now": packed.packed_now,
                              "photos_per_s_packing": round(n / seconds, 1) if packed.packed_now else None,
                              "mean_sample_kib": round(size / n / 1024, 1)}
        print(f"packed {n} photos into {packed.shards} shards in {seconds:.1f} s", file=sys.stderr)
    report["data_path_only"] = [_child("stream", shards=work / f"shards-{large}", workers=w, pairs=args.pairs,
                                       batches=args.batches) for w in (0, 1, 2)]
    for row in report["data_path_only"]:
        print(f"data path, {row['workers']} workers: {row['photos_per_s']} photos/s", file=sys.stderr)
    for n in (small, large):
        report["sizes"][n]["train"] = _child("train", shards=work / f"shards-{n}", workers=args.workers,
                                             profile=args.profile, steps=args.steps)
        print(f"trained {args.steps} steps from {n} photos: {report['sizes'][n]['train']}", file=sys.stderr)

    # real camera JPEGs (the extended profile's 498, stored as lossless crops of at most 768 px; the demo's
    # 300 smaller ones without the shared collection): packing and decoding rates in MB/s carry over to
    # full-resolution originals better than rates in photos/s
    from exifkit.config import data_store, load_profile

    profile = "extended"
    try:
        store = data_store(load_profile(profile, ROOT))
        cameras = [store.path(e) for e in store.manifest if e.kind == "camera"]
    except Exception:  # noqa: BLE001 - no shared collection here: the embedded demo photos instead
        profile = "demo"
        store = data_store(load_profile(profile, ROOT))
        cameras = [store.path(e) for e in store.manifest if e.kind == "camera"]
    camera_shards = work / f"shards-camera-{profile}"
    t = time.perf_counter()
    packed = pack([Item(p, p.name) for p in cameras], camera_shards, shard_size=100, workers=2, progress=False)
    seconds = time.perf_counter() - t
    megabytes = sum(p.stat().st_size for p in cameras) / 1e6
    report["camera_photos"] = {"profile": profile, "photos": len(cameras), "mean_kib": round(megabytes * 1e6 / 1024 / len(cameras), 1),
                               "pack_s": round(seconds, 1), "packed_now": packed.packed_now,
                               "mb_per_s_packing": round(megabytes / seconds, 2) if packed.packed_now else None,
                               "stream_1_worker": _child("stream", shards=camera_shards, workers=1, pairs=args.pairs,
                                                         batches=args.batches)}
    cam = report["camera_photos"]
    cam["stream_1_worker"]["mb_per_s"] = round(cam["stream_1_worker"]["photos_per_s"] * cam["mean_kib"] * 1024 / 1e6, 2)
    print(f"camera photos ({profile}): {cam}", file=sys.stderr)

    report["in_memory_same_photos"] = _child("memory", shards=work / f"shards-{small}", profile=args.profile,
                                             steps=args.steps)
    print(f"in memory, {small} photos: {report['in_memory_same_photos']}", file=sys.stderr)

    peaks = [report["sizes"][n]["train"]["peak_mb"] for n in (small, large)]
    ratio = max(peaks) / min(peaks)
    report["peak_rss_ratio"] = round(ratio, 3)
    report["memory_flat"] = ratio <= 1.2

    # extrapolation to the paper's scale
    from exifkit.data.manifest import read_manifest

    # photo sizes of the kit's 498 camera photos: the originals, and as stored (a lossless 768 px crop)
    camera = [e for e in read_manifest(ROOT / "data_manifests" / "extended.csv") if e.kind == "camera"]
    per_photo_kib = sum(e.source_bytes for e in camera) / len(camera) / 1024
    cropped_kib = sum(e.bytes for e in camera) / len(camera) / 1024
    pack_mb_s = cam["mb_per_s_packing"] or 1.0
    worker_mb_s = cam["stream_1_worker"]["mb_per_s"]
    # Assumed GPU step when none was measured: 64 pairs x 2 photos x 16 patches x 0.29 GMAC (METHOD.md) x 2 FLOP x 3
    # (forward + backward) = 3.6 TFLOP per step, at 150 TFLOP/s sustained bf16 (a sixth of an H100/H200's dense peak).
    gpu_step = args.gpu_step_s or 64 * 2 * 16 * 0.29e9 * 2 * 3 / 150e12
    needed = 2 * 64 / gpu_step
    report["extrapolation"] = {
        "photos": 900_000, "gpus": 8, "shard_size": 1000, "shards": 900,
        "camera_original_kib": round(per_photo_kib, 1), "shard_mib_originals": round(1000 * per_photo_kib / 1024, 1),
        "collection_gib_originals": round(900_000 * per_photo_kib / 2**20, 1),
        "camera_crop768_kib": round(cropped_kib, 1), "shard_mib_max_side_768": round(1000 * cropped_kib / 1024, 1),
        "collection_gib_max_side_768": round(900_000 * cropped_kib / 2**20, 1),
        "packing_rate_mb_per_s_2_processes": pack_mb_s,
        "packing_hours_originals_2_processes": round(900_000 * per_photo_kib * 1024 / 1e6 / pack_mb_s / 3600, 1),
        "packing_hours_crop768_2_processes": round(900_000 * cropped_kib * 1024 / 1e6 / pack_mb_s / 3600, 1),
        "gpu_step_s": round(gpu_step, 4), "gpu_step_source": "--gpu-step-s" if args.gpu_step_s else "assumed (FLOP count)",
        "photos_per_s_per_gpu_needed": round(needed, 1), "decode_mb_per_s_per_worker": worker_mb_s,
        "workers_per_gpu_needed_originals": math.ceil(needed * per_photo_kib * 1024 / 1e6 / worker_mb_s),
        "workers_per_gpu_needed_crop768": math.ceil(needed * cropped_kib * 1024 / 1e6 / worker_mb_s),
        # the paper profile crops photos to 256 px before cutting patches: packed with --max-side 256, a
        # photo is about (256 / 768)^2 of a 768 px crop (area scaling; small files cost more per byte to open)
        "workers_per_gpu_needed_crop256": math.ceil(needed * cropped_kib * (256 / 768) ** 2 * 1024 / 1e6 / worker_mb_s),
    }
    from _common import publish

    publish(report, args.out, "data_path")
    return 0


if __name__ == "__main__":
    sys.exit(main())
