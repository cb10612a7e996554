"""Packing photos into shards and streaming pretext pairs from them: what the in-memory path and the
streamed one have in common, and what a resumed, sharded or interrupted run keeps."""

from __future__ import annotations

import hashlib
import shutil
import tarfile

import numpy as np
import pytest
import torch

from exifkit.data.shards import Item, ShardError, Shards, iter_shard, pack
from exifkit.data.stream import PairStream, batch_loader
from exifkit.exif.read import read_many
from exifkit.model.heads import head_sizes
from exifkit.model.extractor import ExtractorConfig
from exifkit.pretext import PretextConfig, PretextModel, load_photos, make_batch, pretext_loss, train_pretext
from exifkit.train import load_checkpoint

TINY = ExtractorConfig(patch_size=16, width=4, convs_per_stage=(1, 1, 1), transformer_depth=1, heads=2,
                       head_dim=4, mlp_dim=8)


@pytest.fixture(scope="module")
def photos_dir(demo_camera_paths, tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for p in demo_camera_paths[:24]:
        shutil.copy(p, folder / p.name)
    return folder


def _items(folder):
    return [Item(p, p.name) for p in sorted(folder.iterdir())]


@pytest.fixture(scope="module")
def packed(photos_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    pack(_items(photos_dir), out, shard_size=10, progress=False)
    return Shards.open(out)


def _stream(shards, **kw):
    args = dict(batch_pairs=3, n_patches=2, patch_size=16, max_side=64, seed=4, buffer=8)
    return PairStream(shards, **{**args, **kw})


def test_shards_hold_the_original_bytes_the_exif_targets_and_the_vocabularies(packed, photos_dir):
    from exifkit.exif.schema import build_labels

    assert len(packed) == 24 and [s["samples"] for s in packed.index["shards"]] == [10, 10, 4]
    with tarfile.open(packed.paths[0]) as tf:
        names = tf.getnames()
    assert names[:2] == ["000000000.jpg", "000000000.json"]  # WebDataset layout: key.ext members in order
    for record, data in iter_shard(packed.paths[1]):
        original = (photos_dir / record["name"]).read_bytes()
        assert data == original and record["sha256"] == hashlib.sha256(original).hexdigest()
    paths = sorted(photos_dir.iterdir())
    labels = build_labels(read_many(paths))
    assert {k: v.classes for k, v in packed.vocabularies().items()} == {k: v.classes for k, v in labels.vocabularies.items()}


def test_bad_files_are_reported_and_the_rest_packed(photos_dir, tmp_path):
    bad = tmp_path / "in"
    shutil.copytree(photos_dir, bad)
    first = sorted(bad.iterdir())[0]
    first.write_bytes(first.read_bytes()[:2000])  # truncated
    (bad / "notes.jpg").write_text("not an image")
    report = pack(_items(bad), tmp_path / "out", shard_size=10, progress=False)
    assert report.samples == 23 and {f["cause"] for f in report.failures} == {
        "image data is truncated", "not an image in a supported format"}
    assert (tmp_path / "out" / "failures.csv").read_text().count("\n") == 3


def test_an_interrupted_pack_continues_and_keeps_what_was_done(photos_dir, tmp_path, monkeypatch):
    import exifkit.data.shards as shards

    real, calls = shards._pack_shard, []

    def failing(task):
        calls.append(task[1])
        if task[1] == 1:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(shards, "_pack_shard", failing)
    with pytest.raises(KeyboardInterrupt):
        pack(_items(photos_dir), tmp_path, shard_size=10, progress=False)
    done = (tmp_path / "shard-000000.tar").stat().st_mtime_ns
    assert not (tmp_path / "index.json").exists()
    monkeypatch.setattr(shards, "_pack_shard", real)
    report = pack(_items(photos_dir), tmp_path, shard_size=10, progress=False)
    assert report.packed_now == 2 and report.samples == 24
    assert (tmp_path / "shard-000000.tar").stat().st_mtime_ns == done
    with pytest.raises(ShardError, match="another file list"):
        pack(_items(photos_dir)[:5], tmp_path, shard_size=10, progress=False)


def test_a_streamed_batch_has_the_labels_and_loss_of_the_same_pairs_in_memory(packed, photos_dir):
    batch = next(iter(_stream(packed)))
    paths = sorted(photos_dir.iterdir())
    photos = load_photos(paths, read_many(paths), max_side=64)
    by_hash = {hashlib.sha256(p.read_bytes()).hexdigest(): i for i, p in enumerate(paths)}
    first, second = [by_hash[k] for k in batch["keys1"]], [by_hash[k] for k in batch["keys2"]]
    memory = make_batch(photos, first, second, batch["crop_seeds"], 2, 16)
    for key in ("x1", "x2", "cat1"):
        assert torch.equal(batch[key], memory[key]), key
    for key in ("rank1", "rank2"):
        torch.testing.assert_close(batch[key], memory[key], equal_nan=True)
    torch.manual_seed(0)
    model = PretextModel(TINY, head_sizes({k: len(v.classes) for k, v in photos.labels.vocabularies.items()}))
    losses = [pretext_loss(*model(b["x1"], b["x2"]), b)[0] for b in (batch, memory)]
    assert losses[0].item() == losses[1].item()


def test_workers_resume_and_ranks_keep_the_order_deterministic_and_disjoint(packed):
    def keys(loader, n):
        out = []
        for _, b in zip(range(n), loader):
            out.append((b["keys1"], b["crop_seeds"]))
        return out

    straight = keys(batch_loader(_stream(packed, workers=2)), 6)
    again = keys(batch_loader(_stream(packed, workers=2)), 6)
    resumed = keys(batch_loader(_stream(packed, workers=2, start_step=3)), 3)
    assert straight == again and resumed == straight[3:]
    assert keys(batch_loader(_stream(packed, workers=0)), 2) != straight[:2]  # the worker count is part of the order



def test_ranks_read_disjoint_shards_within_an_epoch(photos_dir, tmp_path):
    pack(_items(photos_dir), tmp_path, shard_size=6, progress=False)  # four shards of six
    shards = Shards.open(tmp_path)

    def seen(rank):  # two batches of three pairs from a buffer of three: all within the first epoch
        batches = [b for _, b in zip(range(2), iter(_stream(shards, rank=rank, world=2, buffer=3)))]
        return {k for b in batches for k in b["keys1"] + b["keys2"]}

    rank0, rank1 = seen(0), seen(1)
    assert rank0 and rank1 and not rank0 & rank1


def test_pretext_training_streams_from_shards_and_resumes_exactly(packed, tmp_path):
    config = PretextConfig(extractor=TINY, steps=4, batch_pairs=3, n_patches=2, checkpoint_every=2, log_every=1,
                           seed=3, device="cpu", max_side=64, workers=1, shuffle_buffer=8)
    train_pretext(config, packed, tmp_path / "straight", progress=False)
    from dataclasses import replace

    train_pretext(replace(config, steps=2), packed, tmp_path / "split", progress=False)
    train_pretext(config, packed, tmp_path / "split", resume=True, progress=False)
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    assert a["step"] == b["step"] == 4 and b["segments"] == [[0, 2], [2, 4]]  # resumed, not retrained
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["vocabularies"] == {k: v.classes for k, v in packed.vocabularies().items()}


def test_a_large_jpeg_is_stored_as_a_lossless_crop_with_its_camera_tables_and_exif(photos_dir, tmp_path):
    from PIL import Image

    from exifkit.exif.read import read_exif
    from tests.conftest import require_tool

    require_tool("jpegtran")
    source = sorted(photos_dir.iterdir())[0]
    pack([Item(source, source.name)], tmp_path, shard_size=10, max_side=128, progress=False)
    (record, data), = list(iter_shard(Shards.open(tmp_path).paths[0]))
    (tmp_path / "stored.jpg").write_bytes(data)
    with Image.open(source) as original, Image.open(tmp_path / "stored.jpg") as stored:
        assert max(stored.size) <= 128 < max(original.size) and stored.quantization == original.quantization
    assert record["transform"].startswith("jpegtran -crop") and record["sha256"] == hashlib.sha256(data).hexdigest()
    assert read_exif(tmp_path / "stored.jpg").get("Make") == read_exif(source).get("Make")


def test_binary_training_streams_a_packed_real_fake_set_and_resumes_exactly(demo_store, tmp_path):
    from dataclasses import replace

    from exifkit.binary import BinaryConfig, train_binary
    from exifkit.data.shards import folder_items
    from exifkit.model import Extractor

    layout = tmp_path / "cnnspot" / "cat"
    reals = [e for e in demo_store.manifest if e.kind == "camera"][:6]
    fakes = [e for e in demo_store.manifest if e.label == "fake" and e.kind == "generated"][:6]
    for entries, folder in ((reals, "0_real"), (fakes, "1_fake")):
        (layout / folder).mkdir(parents=True)
        for e in entries:
            shutil.copy(demo_store.path(e), layout / folder / demo_store.path(e).name)
    items, problems = folder_items(tmp_path / "cnnspot", binary=True)
    assert not problems and sorted({(i.label, i.group) for i in items}) == [(0, "cat"), (1, "cat")]
    pack(items, tmp_path / "shards", kind="binary", shard_size=4, progress=False)
    shards = Shards.open(tmp_path / "shards")
    from exifkit.data.stream import ImageStream

    with pytest.raises(ShardError, match="packed with --binary"):
        ImageStream(Shards(shards.root, {**shards.index, "kind": "pretext"}), BinaryConfig(extractor=TINY))
    config = BinaryConfig(extractor=TINY, steps=4, batch_images=3, n_patches=2, checkpoint_every=2, log_every=1,
                          device="cpu", workers=1, shuffle_buffer=4)
    frozen = Extractor(TINY)
    train_binary(config, frozen, shards, None, tmp_path / "straight", progress=False)
    train_binary(replace(config, steps=2), frozen, shards, None, tmp_path / "split", progress=False)
    train_binary(config, frozen, shards, None, tmp_path / "split", resume=True, progress=False)
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    assert a["step"] == b["step"] == 4 and b["segments"] == [[0, 2], [2, 4]]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


@pytest.mark.slow
def test_torchrun_streams_to_two_ranks_keeps_replicas_identical_and_resumes_exactly(photos_dir, tmp_path):
    import os
    import subprocess
    import sys

    from exifkit.cli import main

    assert main(["data", "pack", str(photos_dir), "--out", str(tmp_path / "shards"), "--shard-size", "6",
                 "--workers", "1", "--quiet"]) == 0

    def torchrun(out, steps, *extra):
        run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              "-m", "exifkit.cli", "pretext", "train", "--profile", "demo", "--data",
                              str(tmp_path / "shards"), "--workers", "1", "--steps", str(steps), "--batch-pairs", "2",
                              "--out", str(tmp_path / out), "--quiet", *extra], capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        return load_checkpoint(tmp_path / out / "last.pt")

    straight = torchrun("straight", 4)
    assert straight["replicas_checked"] == 2 and straight["step"] == 4 and straight["config"]["workers"] == 1
    torchrun("split", 2)
    resumed = torchrun("split", 4, "--resume")
    assert resumed["step"] == 4 and resumed["segments"] == [[0, 2], [2, 4]] and all(torch.equal(straight["model"][k], resumed["model"][k]) for k in straight["model"])


def test_a_file_list_packs_what_it_names_and_names_what_is_missing(photos_dir, tmp_path):
    from exifkit.data.shards import list_items

    names = [p.name for p in sorted(photos_dir.iterdir())[:3]]
    listing = tmp_path / "photos.txt"
    listing.write_text("# three photos and one that is gone\n" + "\n".join(str(photos_dir / n) for n in names)
                       + "\n\nmissing.jpg\n")
    items, problems = list_items(listing)
    assert [i.path.name for i in items] == names
    assert [(p.path.name, p.cause) for p in problems.failures] == [("missing.jpg", "file not found")]
    (tmp_path / "set" / "dog" / "1_fake").mkdir(parents=True)
    shutil.copy(photos_dir / names[0], tmp_path / "set" / "dog" / "1_fake" / "a.jpg")
    (tmp_path / "set.txt").write_text("set/dog\n")
    items, problems = list_items(tmp_path / "set.txt", binary=True)
    assert [(i.name, i.label, i.group) for i in items] == [("set/dog/1_fake/a.jpg", 1, "dog")] and not problems


DDP_RUN = """
import os, signal, sys
import exifkit.pretext as pretext
from exifkit.data.shards import Shards
from exifkit.model.extractor import ExtractorConfig
from exifkit.pretext import PretextConfig

tiny = ExtractorConfig(patch_size=16, width=4, convs_per_stage=(1, 1, 1), transformer_depth=1, heads=2, head_dim=4,
                       mlp_dim=8)
config = PretextConfig(extractor=tiny, steps=20, batch_pairs=2, n_patches=2, checkpoint_every=5, log_every=1, seed=3,
                       device="cpu", max_side=64, workers=2, shuffle_buffer=50)
kill_at, resume = int(sys.argv[3]), bool(int(sys.argv[4]))
real, calls = pretext.pretext_loss, []

def loss(*args, **kwargs):
    calls.append(1)
    if kill_at and len(calls) == kill_at and os.environ.get("RANK") == "0":
        os.kill(os.getpid(), signal.SIGKILL)  # a real interruption, mid-step
    return real(*args, **kwargs)

pretext.pretext_loss = loss
pretext.train_pretext(config, Shards.open(sys.argv[1]), sys.argv[2], resume=resume, progress=False)
"""


@pytest.mark.slow
def test_two_gloo_ranks_with_two_workers_each_resume_a_killed_run_to_identical_weights(tmp_path):
    import os
    import subprocess
    import sys

    from exifkit.data.synthetic import write_photos

    photos = write_photos(tmp_path / "photos", 2000, workers=2)
    files = sorted(photos.rglob("*.jpg"))
    report = pack([Item(p, str(p.relative_to(photos))) for p in files], tmp_path / "shards", shard_size=250, workers=2,
                  progress=False)
    assert report.samples == 2000 and report.shards == 8
    script = tmp_path / "ddp.py"
    script.write_text(DDP_RUN)

    def torchrun(out, kill_at, resume):
        return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               str(script), str(tmp_path / "shards"), str(tmp_path / out), str(kill_at), str(int(resume))],
                              capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)

    straight = torchrun("straight", 0, False)
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = torchrun("split", 13, False)  # rank 0 killed during step 13, after the checkpoint at step 10
    assert killed.returncode != 0 and load_checkpoint(tmp_path / "split" / "last.pt")["step"] == 10
    resumed = torchrun("split", 0, True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    assert b["segments"] == [[0, 10], [10, 20]]  # the resumed process ran steps 11-20 only
    assert a["step"] == b["step"] == 20 and b["replicas_checked"] == 2
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("shard-*.tar"))}


def test_a_full_disk_names_the_shard_and_the_rerun_writes_it_afresh(photos_dir, packed, tmp_path, monkeypatch):
    real, calls = tarfile.TarFile.addfile, []

    def disk_fills(self, *args, **kw):
        calls.append(1)
        if len(calls) == 25:  # the third sample of the second shard
            raise OSError(28, "No space left on device")
        return real(self, *args, **kw)

    monkeypatch.setattr(tarfile.TarFile, "addfile", disk_fills)
    with pytest.raises(ShardError, match=r"shard-000001\.tar.*No space left on device"):
        pack(_items(photos_dir), tmp_path, shard_size=10, progress=False)
    assert sorted(p.name for p in tmp_path.glob("shard-*")) == ["shard-000000.json", "shard-000000.tar"]
    monkeypatch.setattr(tarfile.TarFile, "addfile", real)
    report = pack(_items(photos_dir), tmp_path, shard_size=10, progress=False)
    assert report.packed_now == 2 and report.samples == 24
    assert _digests(tmp_path) == _digests(packed.root)  # the same shards as a pack that never failed


def test_packing_under_a_file_names_the_path_and_the_cause(photos_dir, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ShardError, match=r"file/sub: cannot create the output folder \(Not a directory\)"):
        pack(_items(photos_dir), tmp_path / "file" / "sub", shard_size=10, progress=False)


def test_a_truncated_shard_is_named_and_the_run_resumes_once_it_is_repacked(packed, tmp_path):
    from dataclasses import replace

    copy = tmp_path / "shards"
    shutil.copytree(packed.root, copy)
    config = PretextConfig(extractor=TINY, steps=4, batch_pairs=3, n_patches=2, checkpoint_every=2, log_every=1,
                           seed=3, device="cpu", max_side=64, workers=1, shuffle_buffer=8)
    train_pretext(config, packed, tmp_path / "straight", progress=False)
    shards = Shards.open(copy)
    train_pretext(replace(config, steps=2), shards, tmp_path / "run", progress=False)
    whole = {p: p.read_bytes() for p in shards.paths}
    for p, data in whole.items():  # every shard cut short while the run is stopped
        p.write_bytes(data[:len(data) // 2])
    with pytest.raises(ShardError, match=r"shard-00000\d\.tar: cannot read this shard \(unexpected end of data\)"):
        train_pretext(config, shards, tmp_path / "run", resume=True, progress=False)
    with pytest.raises(ShardError, match=r"shard-000000\.tar: \d+ bytes, but \d+ were packed \(truncated"):
        Shards.open(copy)
    for p, data in whole.items():
        p.write_bytes(data)
    train_pretext(config, Shards.open(copy), tmp_path / "run", resume=True, progress=False)
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "run" / "last.pt")
    assert b["segments"] == [[0, 2], [2, 4]] and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_webdataset_reads_every_sample_bytes_and_exif_targets_back(packed, photos_dir):
    import json

    import webdataset as wds

    from exifkit.exif.schema import tag_values

    samples = list(wds.WebDataset([str(p) for p in packed.paths], shardshuffle=False, empty_check=False))
    ours = [record for p in packed.paths for record, _ in iter_shard(p)]
    assert [s["__key__"] for s in samples] == [r["key"] for r in ours] and len(samples) == len(packed)
    for sample in samples:
        record = json.loads(sample["json"])
        original = photos_dir / record["name"]
        assert sample["jpg"] == original.read_bytes()
        assert record["exif"] == tag_values(read_many([original]))[0]
