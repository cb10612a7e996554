"""Two runs with the same seed write byte-identical tables (reduced configuration, CPU)."""

from __future__ import annotations

import numpy as np
import torch

from exifkit.binary import BinaryConfig, load_binary, load_training_images, train_binary
from exifkit.config import load_profile
from exifkit.exif.read import read_many
from exifkit.metrics import suite_table
from exifkit.model.extractor import ExtractorConfig
from exifkit.features import cached_outputs
from exifkit.oneclass import OneClassDetector
from exifkit.pretext import PretextConfig, load_photos, load_pretext, train_pretext

TINY = ExtractorConfig(patch_size=16, width=4, convs_per_stage=(1, 1, 1), transformer_depth=1, heads=2,
                       head_dim=4, mlp_dim=8)


def _pipeline(out, root, demo_store):
    from dataclasses import replace

    splits = load_profile("demo", root=root).splits(demo_store.manifest)
    suite = replace(splits.suite, pairs=[replace(p, reals=p.reals[:4], fakes=p.fakes[:4]) for p in splits.suite.pairs[:3]])
    cams = [demo_store.path(e) for e in demo_store.manifest if e.kind == "camera"][:16]
    photos = load_photos(cams, read_many(cams), max_side=64)
    pre = train_pretext(PretextConfig(extractor=TINY, steps=3, batch_pairs=2, n_patches=4, seed=5, device="cpu",
                                      checkpoint_every=3), photos, out / "pretext", progress=False)
    extractor = load_pretext(pre.checkpoint)[0].extractor
    train, _ = cached_outputs(extractor, splits.oneclass_train[:20], demo_store, out / "cache", max_patches=8,
                              progress=False)
    test, _ = cached_outputs(extractor, suite.samples(), demo_store, out / "cache", max_patches=8, progress=False)
    gmm = OneClassDetector(n_components=2).fit(np.stack(list(train.values())))
    scores = {k: float(-gmm.score_samples(v[None])[0]) for k, v in test.items()}
    suite_table(suite, scores, -gmm.threshold_, bootstrap=20, seed=1).to_csv(out / "oneclass.csv", index=False)
    images, labels, _ = load_training_images(splits.binary_train[::10], demo_store)
    cfg = BinaryConfig(extractor=TINY, steps=3, batch_images=4, n_patches=4, device="cpu", seed=5)
    res = train_binary(cfg, extractor, images, labels, out / "binary", progress=False)
    probs, _ = cached_outputs(load_binary(res.checkpoint, TINY), suite.samples(), demo_store, out / "cache",
                              max_patches=8, progress=False)
    suite_table(suite, probs, 0.5, bootstrap=20, seed=1).to_csv(out / "binary.csv", index=False)


def test_same_seed_same_bytes(tmp_path, root, demo_store):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for run in ("a", "b"):
            _pipeline(tmp_path / run, root, demo_store)
    finally:
        torch.set_num_threads(threads)  # the rest of this worker's tests run as configured
    for table in ("oneclass.csv", "binary.csv"):
        assert (tmp_path / "a" / table).read_bytes() == (tmp_path / "b" / table).read_bytes(), table
