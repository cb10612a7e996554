"""The kit's network against the authors' own (their ``Classifier`` package), in one process.

Both networks hold the same weights (the kit's, written into the authors' module names by
``exifkit.model.official.to_official``; the script checks that their features agree before timing), run
under the same allocator setting and the same thread count, and take turns: every round times each
contestant in a new order, so drift of the machine (another process, thermal state) falls on all of
them alike. Reported: the median over rounds of each round's median call, with the range over rounds.

Workloads: inference on 4 images of 16 patches of 64 px (``embed``, no gradients), one pretext step
(``--pairs`` pairs, forward, backward and Adam, the kit's pretext loss on both networks) and one binary
step (``--binary-images`` images, the trainable network and the frozen teacher it is regularised
towards, the kit's loss on both). Contestants:

- ``authors fp32``: their network from a local copy of github.com/Ekko-zn/SDAIE (``--official PATH`` or
  ``EXIFKIT_OFFICIAL_REPO``; it needs their ``einops`` dependency). Absent, the script says so and
  compares with the kit's reference mode alone;
- ``kit reference fp32``: ``Extractor(mode="reference")``, the architecture read module by module;
- ``kit fp32``: the fast path in float32;
- ``kit default``: the fast path in the kit's default precision (``auto``: bf16 products where the
  CPU has AVX512-BF16, for inference and training alike).
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from exifkit.model.extractor import ExtractorOutput

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine, peak_rss_mb, publish  # noqa: E402

ENV = "EXIFKIT_OFFICIAL_REPO"
WORKLOADS = ("inference", "pretext_step", "binary_step")
UNITS = {"inference": "img/s", "pretext_step": "pair/s", "binary_step": "img/s"}


def authors_network(repo: Path):
    """The authors' ``base`` network class from their repository, imported from ``repo``."""
    if not (repo / "Classifier" / "Net.py").is_file():
        raise SystemExit(f"{repo}: no Classifier/Net.py there; give a checkout of github.com/Ekko-zn/SDAIE")
    sys.path.insert(0, str(repo))
    try:
        return importlib.import_module("Classifier.Net").base
    except ImportError as exc:
        raise SystemExit(f"{repo}: the authors' network does not import ({exc}); it needs their dependencies "
                         "(pip install einops)") from exc
    finally:
        sys.path.remove(str(repo))


class AuthorsExtractor(nn.Module):
    """Their network behind the kit's extractor interface: ``forward`` gives an ExtractorOutput (their
    four outputs after the image feature are the stage maps, the fifth the patch vectors: what their
    binary regulariser compares), ``embed`` the feature without gradients."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x):
        f, *stages, vectors = self.network(x)
        return ExtractorOutput(feature=f, stages=stages, patch_vectors=vectors)

    @torch.inference_mode()
    def embed(self, x):
        return self.network(x)[0]


def contestants(repo: Path | None, config):
    """name -> (extractor factory, training precision); every factory builds the same weights. "auto"
    resolves as the trainers resolve it (bf16 where the CPU runs it natively)."""
    from exifkit.model import Extractor
    from exifkit.model.official import to_official
    from exifkit.train import resolve_precision

    torch.manual_seed(0)
    state = Extractor(config).state_dict()

    def kit(mode, precision):
        def build():
            extractor = Extractor(config, mode=mode, precision=precision)
            extractor.load_state_dict(state)
            return extractor
        return build

    named = {}
    if repo is not None:
        base = authors_network(repo)

        def authors():
            with warnings.catch_warnings():  # their SRM bank is built from a list of arrays, which torch warns about
                warnings.simplefilter("ignore", UserWarning)
                network = base()
            network.load_state_dict(to_official(kit("reference", "fp32")()), strict=True)
            return AuthorsExtractor(network)
        named["authors fp32"] = (authors, "fp32")
    named["kit reference fp32"] = (kit("reference", "fp32"), "fp32")
    named["kit fp32"] = (kit("fast", "fp32"), "fp32")
    named["kit default"] = (kit("fast", "auto"), resolve_precision("auto", torch.device("cpu")))
    return named


def inputs(args):
    """Patch sets, pretext pairs and binary batches from the demo's photos, as the trainers build them."""
    import numpy as np
    from exifkit.binary import BinaryConfig, binary_batch
    from exifkit.data.images import load_rgb
    from exifkit.exif.read import read_many
    from exifkit.model import ExtractorConfig
    from exifkit.model.heads import head_sizes
    from exifkit.patches import random_patches, to_tensor
    from exifkit.pretext import PretextConfig, load_photos, make_batch, pair_batch
    from training import demo_cameras

    store, cameras = demo_cameras()
    cameras = cameras[:args.photos]
    fakes = [store.path(e) for e in store.manifest if e.kind == "generated"][:args.photos // 2]
    photos = load_photos(cameras, read_many(cameras), max_side=1024)
    rng = np.random.default_rng(0)
    sets = to_tensor(np.stack([random_patches(load_rgb(p), 16, 64, rng) for p in cameras[:args.images]]))
    pretext = PretextConfig(extractor=ExtractorConfig(), batch_pairs=args.pairs)
    first, second, seeds = pair_batch(len(photos), 0, pretext.batch_pairs, pretext.seed)
    pairs = make_batch(photos, first, second, seeds, pretext.n_patches, 64)
    binary = BinaryConfig(extractor=ExtractorConfig(), batch_images=args.binary_images)
    images = [load_rgb(p) for p in cameras[:len(fakes)] + fakes]
    labels = np.array([0] * len(fakes) + [1] * len(fakes))
    x, y = binary_batch(images, labels, 0, binary)
    sizes = head_sizes({k: len(v.classes) for k, v in photos.labels.vocabularies.items()})
    return {"sets": sets, "pairs": pairs, "pretext": pretext, "sizes": sizes, "x": x, "y": torch.as_tensor(y),
            "binary": binary}


def workloads(build, precision: str, data: dict) -> dict:
    """workload -> a call that runs it once and returns how many items it processed."""
    from exifkit.binary import BinaryModel, binary_step, frozen_teacher
    from exifkit.pretext import PretextModel, pretext_step

    network = build().eval()

    def inference():
        network.embed(data["sets"])
        return len(data["sets"])

    pretext = PretextModel(data["pretext"].extractor, data["sizes"])
    pretext.extractor = build()
    pretext.train()
    pretext_optimizer = torch.optim.Adam(pretext.parameters(), lr=data["pretext"].lr)

    def pretext_once():
        pretext_step(pretext, pretext_optimizer, data["pairs"], data["pretext"], precision)
        return data["pretext"].batch_pairs

    binary = BinaryModel(data["binary"].extractor)
    binary.extractor = build()
    binary.train()
    teacher = frozen_teacher(build())
    binary_optimizer = torch.optim.Adam(binary.parameters(), lr=data["binary"].lr)

    def binary_once():
        binary_step(binary, teacher, binary_optimizer, data["x"], data["y"], data["binary"].alpha, precision)
        return len(data["y"])

    return {"inference": inference, "pretext_step": pretext_once, "binary_step": binary_once}


def agreement(named: dict, data: dict) -> dict:
    """Largest difference of each contestant's image features from the kit's reference mode, relative to
    the largest feature: the float32 ones must agree (else the timing would compare different networks),
    the default precision's is reported beside its timing."""
    reference = named["kit reference fp32"][0]().eval().embed(data["sets"])
    out = {}
    for name, (build, _) in named.items():
        feature = build().eval().embed(data["sets"])
        out[name] = float((feature - reference).abs().max() / reference.abs().max())
    return out


def measure(calls: dict, args) -> dict:
    """Alternating rounds: in round r the contestants go in an order rotated by r."""
    names = list(calls)
    per_round = {name: [] for name in names}
    for name in names:
        for _ in range(args.warmup):
            calls[name]()
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times = []
            for _ in range(args.calls):
                t = time.perf_counter()
                n = calls[name]()
                times.append(n / (time.perf_counter() - t))
            per_round[name].append(statistics.median(times))
    return {name: {"median": statistics.median(v), "min": min(v), "max": max(v), "rounds": len(v)}
            for name, v in per_round.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--official", type=Path, default=os.environ.get(ENV) or None,
                        help=f"a checkout of github.com/Ekko-zn/SDAIE (default: ${ENV})")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--calls", type=int, default=2, help="timed calls per contestant per round (default 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per contestant first (default 2)")
    parser.add_argument("--images", type=int, default=4, help="images of 16 patches per inference call")
    parser.add_argument("--pairs", type=int, default=8, help="pairs per pretext step")
    parser.add_argument("--binary-images", type=int, default=16, help="images per binary step")
    parser.add_argument("--photos", type=int, default=32, help="demo photos the batches are drawn from")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench", help="where the JSON goes")
    parser.add_argument("--smoke", action="store_true", help="one quick pass on tiny settings: does it run?")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.calls, args.warmup, args.pairs, args.binary_images, args.photos = 1, 1, 0, 1, 2, 8
        args.images = 1

    from exifkit.model import ExtractorConfig
    from exifkit.runtime import keep_freed_memory

    keep_freed_memory()  # one allocator setting for every contestant, as the exifkit command sets it
    repo = Path(args.official).expanduser() if args.official else None
    if repo is None:
        print(f"[versus_official] the authors' repository is not here (give --official PATH or ${ENV}): "
              "the kit's reference mode is the only baseline", file=sys.stderr)
    named = contestants(repo, ExtractorConfig())
    data = inputs(args)
    drift = agreement(named, data)
    for name, value in drift.items():
        if name != "kit default" and value > 1e-3:
            raise SystemExit(f"[versus_official] {name}: features differ from the reference by {value:.2e} "
                             "(relative): not the same network, nothing to compare")
    precisions = {name: {"inference": getattr(build(), "inference_precision", "fp32"), "pretext_step": precision,
                         "binary_step": precision} for name, (build, precision) in named.items()}
    calls = {name: workloads(build, precision, data) for name, (build, precision) in named.items()}
    results = {w: measure({name: c[w] for name, c in calls.items()}, args) for w in args.workloads}
    baselines = [b for b in ("authors fp32", "kit reference fp32") if b in named]
    ratios = {b: {w: {name: round(results[w][name]["median"] / results[w][b]["median"], 2) for name in named}
                  for w in args.workloads} for b in baselines}
    report = {"benchmark": "versus_official", "machine": machine(), "official_repo": str(repo) if repo else None,
              "precision": precisions,
              "feature_drift_vs_reference": drift, "results": results, "ratio": ratios,
              "settings": {k: getattr(args, k) for k in ("rounds", "calls", "warmup", "images", "pairs",
                                                         "binary_images", "smoke")},
              "peak_rss_mb": round(peak_rss_mb(), 1)}
    print(table(results, ratios, precisions))
    publish(report, args.out, "versus_official")
    return report


def table(results: dict, ratios: dict, precisions: dict) -> str:
    lines = ["", "versus_official (median over rounds, range in brackets)"]
    baselines = list(ratios)
    header = ["workload", "contestant", "precision", "rate"] + [f"/ {b}" for b in baselines]
    rows = [header]
    for w, by_name in results.items():
        for name, r in by_name.items():
            rows.append([w, name, precisions[name][w], f"{r['median']:.3g} {UNITS[w]} ({r['min']:.3g}-{r['max']:.3g})",
                         *(f"x{ratios[b][w][name]:.2f}" for b in baselines)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(wd) for c, wd in zip(row, widths)))
        if i == 0:
            lines.append("  ".join("-" * wd for wd in widths))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
