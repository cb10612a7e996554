from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from exifkit.exif.read import read_many
from exifkit.model.extractor import ExtractorConfig
from exifkit.pretext import (PretextConfig, load_photos, load_pretext, pair_batch, pretext_loss, ranking_loss,
                             split_indices, train_pretext)
from exifkit.train import load_checkpoint

TINY = ExtractorConfig(patch_size=16, width=4, convs_per_stage=(1, 1, 1), transformer_depth=1, heads=2,
                       head_dim=4, mlp_dim=8)


def _phi(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_ranking_loss_by_hand_with_ties_and_missing_values():
    s1 = torch.tensor([0.5, -0.2, 1.0, 0.3])
    s2 = torch.tensor([0.0, 0.3, 1.0, 0.1])
    v1 = torch.tensor([2.0, 1.0, 3.0, float("nan")])
    v2 = torch.tensor([1.0, 4.0, 3.0, 5.0])
    # pair 0: v1 > v2 -> target 1; pair 1: v1 < v2 -> 0; pair 2: tie -> 1; pair 3: missing -> masked
    expected = -(math.log(_phi(0.5)) + math.log(1 - _phi(-0.5)) + math.log(_phi(0.0))) / 3
    assert ranking_loss(s1, s2, v1, v2, ties_label=1.0).item() == pytest.approx(expected, rel=1e-6)
    no_ties = -(math.log(_phi(0.5)) + math.log(1 - _phi(-0.5))) / 2
    assert ranking_loss(s1, s2, v1, v2, ties_label=None).item() == pytest.approx(no_ties, rel=1e-6)
    nothing = ranking_loss(s1[3:], s2[3:], v1[3:], v2[3:])
    assert nothing.item() == 0.0 and nothing.requires_grad is False


def test_total_loss_sums_tags_with_weights_and_masks_missing_classes():
    from exifkit.exif.schema import TAGS

    b = 2
    out1 = [torch.zeros(b) if t.kind == "ranked" else torch.zeros(b, 3) for t in TAGS]
    out2 = [torch.zeros(b) if t.kind == "ranked" else torch.zeros(b, 3) for t in TAGS]
    batch = {"cat1": torch.full((b, 7), -1), "rank1": torch.full((b, 7), float("nan")),
             "rank2": torch.full((b, 7), float("nan"))}
    batch["cat1"][0, 0] = 2  # only Make of the first image is known
    batch["rank1"][:, 0], batch["rank2"][:, 0] = torch.tensor([1.0, 2.0]), torch.tensor([2.0, 2.0])
    total, per_tag = pretext_loss(out1, out2, batch, weights={"Make": 2.0})
    assert per_tag["Make"].item() == pytest.approx(math.log(3))  # uniform logits over 3 classes
    assert per_tag["FocalLength"].item() == pytest.approx(math.log(2))  # Phi(0) = 0.5 for both pairs
    assert all(v.item() == 0 for k, v in per_tag.items() if k not in ("Make", "FocalLength"))
    assert total.item() == pytest.approx(2 * math.log(3) + math.log(2))


def test_pairs_are_deterministic_and_ranks_take_disjoint_slices():
    a = pair_batch(50, step=3, batch=4, seed=1)
    assert a == pair_batch(50, step=3, batch=4, seed=1)
    r0 = pair_batch(50, step=3, batch=4, seed=1, rank=0, world=2)
    r1 = pair_batch(50, step=3, batch=4, seed=1, rank=1, world=2)
    assert r0[2] != r1[2]  # different crop seeds: different pair positions
    train, hold = split_indices(100, 0.2, seed=0)
    assert len(hold) == 20 and not set(train) & set(hold) and len(train) + len(hold) == 100


@pytest.fixture(scope="module")
def photos(demo_camera_paths):
    paths = demo_camera_paths[:24]
    return load_photos(paths, read_many(paths), max_side=64)


def _config(**kw):
    return PretextConfig(extractor=TINY, steps=6, batch_pairs=3, n_patches=4, checkpoint_every=3, log_every=1,
                         seed=3, device="cpu", **kw)


def _same_run(a_dir, b_dir):
    """Weights and optimiser state equal to the bit: a resume that restarted, or lost Adam's moments,
    would differ in the optimiser even where the weights happened to agree."""
    a, b = load_checkpoint(a_dir / "last.pt"), load_checkpoint(b_dir / "last.pt")
    assert a["step"] == b["step"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and sa
    for i in sa:
        assert all(torch.equal(sa[i][k], sb[i][k]) for k in ("step", "exp_avg", "exp_avg_sq")), i


def test_interrupted_then_resumed_run_continues_from_its_checkpoint(tmp_path, photos, monkeypatch):
    import exifkit.pretext as pretext

    train_pretext(_config(), photos, tmp_path / "straight", progress=False)
    real_loss, calls = pretext.pretext_loss, []

    class Interrupted(Exception):  # not KeyboardInterrupt itself, which would stop pytest when a resume breaks
        pass

    def counted(*args, **kwargs):  # interrupted during step 5, after the checkpoint at step 3
        calls.append(1)
        if len(calls) == 5:
            raise Interrupted
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(pretext, "pretext_loss", counted)
    with pytest.raises(Interrupted):
        train_pretext(_config(), photos, tmp_path / "split", progress=False)
    assert load_checkpoint(tmp_path / "split" / "last.pt")["step"] == 3
    calls.clear()
    train_pretext(_config(), photos, tmp_path / "split", resume=True, progress=False)
    assert len(calls) == 3  # steps 4-6 only: the checkpoint was continued, not retrained from step 0
    _same_run(tmp_path / "straight", tmp_path / "split")
    rows = (tmp_path / "split" / "metrics.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(s) for s in range(1, 7)]  # no duplicated steps


KILLED_RUN = """
import os, pickle, signal, sys
import exifkit.pretext as pretext
from exifkit.pretext import PretextConfig
photos, config = pickle.load(open(sys.argv[1], "rb"))
real, calls = pretext.pretext_loss, []
def loss(*args, **kwargs):
    calls.append(1)
    if len(calls) == 5:  # during step 5, after the checkpoint at step 3
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
pretext.pretext_loss = loss
pretext.train_pretext(config, photos, sys.argv[2], progress=False)
"""


def test_a_run_killed_by_a_signal_resumes_to_the_same_weights(tmp_path, photos, monkeypatch):
    import pickle
    import signal

    import exifkit.pretext as pretext

    train_pretext(_config(), photos, tmp_path / "straight", progress=False)
    (tmp_path / "inputs.pkl").write_bytes(pickle.dumps((photos, _config())))
    run = subprocess.run([sys.executable, "-c", KILLED_RUN, str(tmp_path / "inputs.pkl"), str(tmp_path / "killed")],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["step"] == 3
    real_loss, calls = pretext.pretext_loss, []
    monkeypatch.setattr(pretext, "pretext_loss", lambda *a, **k: calls.append(1) or real_loss(*a, **k))
    train_pretext(_config(), photos, tmp_path / "killed", resume=True, progress=False)
    assert len(calls) == 3
    _same_run(tmp_path / "straight", tmp_path / "killed")


def test_resume_refuses_settings_that_change_the_run_and_allows_more_steps(tmp_path, photos):
    from exifkit.train import ResumeMismatchError

    train_pretext(replace(_config(), steps=3), photos, tmp_path, progress=False)
    with pytest.raises(ResumeMismatchError, match=r"lr: 0.0001 in the checkpoint, 0.001 now"):
        train_pretext(_config(lr=1e-3), photos, tmp_path, resume=True, progress=False)
    with pytest.raises(ResumeMismatchError, match="already at step 3, past steps=2"):
        train_pretext(replace(_config(), steps=2), photos, tmp_path, resume=True, progress=False)
    train_pretext(replace(_config(), steps=5, log_every=2), photos, tmp_path, resume=True, progress=False)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 5


def test_trained_model_reloads_and_learns_from_a_fixed_batch(tmp_path, photos):
    config = _config(lr=3e-3)
    res = train_pretext(replace(config, steps=30), photos, tmp_path, progress=False)
    model, cfg, vocabs = load_pretext(res.checkpoint)
    assert cfg.extractor == TINY and set(vocabs) == set(photos.labels.vocabularies)
    losses = np.loadtxt(tmp_path / "metrics.csv", delimiter=",", skiprows=1, usecols=1)
    assert np.isfinite(losses).all() and losses[-10:].mean() < losses[:10].mean()


@pytest.mark.slow
def test_two_process_gloo_run_keeps_replicas_identical(tmp_path, root):
    script = tmp_path / "ddp.py"
    script.write_text(f"""
import sys
sys.path.insert(0, {str(root)!r})
from tests.test_pretext import _config
from exifkit.exif.read import read_many
from exifkit.pretext import load_photos, train_pretext
from pathlib import Path
paths = sorted(Path({str(root / 'data' / 'demo' / 'camera_exif')!r}).glob('*'))[:16]
photos = load_photos(paths, read_many(paths), max_side=64)
train_pretext(_config(), photos, {str(tmp_path / 'run')!r}, progress=False)
""")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script)], capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["replicas_checked"] == 2 and state["step"] == 6


def test_a_one_class_vocabulary_stays_a_classification_head():
    from exifkit.exif.schema import TAGS
    from exifkit.model.heads import PretextHeads

    sizes = [1] * len(TAGS)  # every categorical tag with a single class, as on a tiny photo set
    outs = PretextHeads(8, sizes)(torch.randn(3, 8))
    assert [o.shape for o in outs] == [(3,) if t.kind == "ranked" else (3, 1) for t in TAGS]
    batch = {"cat1": torch.zeros(3, 7, dtype=torch.long), "rank1": torch.ones(3, 7), "rank2": torch.ones(3, 7)}
    total, per_tag = pretext_loss(outs, outs, batch)
    assert per_tag["Make"].item() == 0.0 and torch.isfinite(total)


def test_loss_monitor_logs_fixed_pairs_from_step_0_and_keeps_the_lowest_step(tmp_path, photos, demo_camera_paths):
    from exifkit.pretext import LossMonitor

    paths = demo_camera_paths[24:30]
    watched = load_photos(paths, read_many(paths), max_side=64, vocabularies=photos.labels.vocabularies)
    monitor = LossMonitor({"validation": watched}, every=2, pairs=5, n_patches=2, keep_lowest="validation")
    a = monitor.batches(watched, TINY.patch_size, batch=2)
    b = monitor.batches(watched, TINY.patch_size, batch=2)
    assert [len(x["x1"]) for x in a] == [2, 2, 1] and all(torch.equal(x["x1"], y["x1"]) for x, y in zip(a, b))
    train_pretext(_config(), photos, tmp_path, progress=False, monitor=monitor)
    log = np.genfromtxt(tmp_path / "heldout_loss.csv", delimiter=",", names=True)
    assert log["step"].tolist() == [0, 2, 4, 6] and np.isfinite(log["validation"]).all()
    kept = load_checkpoint(tmp_path / "lowest_loss.pt")
    assert kept["step"] == int(log["step"][np.argmin(log["validation"])])


def test_weight_decay_switches_to_decoupled_adamw(tmp_path, photos):
    train_pretext(_config(weight_decay=0.1), photos, tmp_path / "wd", progress=False)
    train_pretext(_config(), photos, tmp_path / "plain", progress=False)
    groups = {k: load_checkpoint(tmp_path / k / "last.pt")["optimizer"]["param_groups"][0] for k in ("wd", "plain")}
    assert groups["wd"]["weight_decay"] == 0.1 and groups["wd"].get("decoupled_weight_decay", True)
    assert groups["plain"]["weight_decay"] == 0
