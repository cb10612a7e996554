from dataclasses import replace

import numpy as np
import pytest
import torch

from exifkit.augment import AugmentConfig, augment, gaussian_blur, jpeg
from exifkit.binary import BinaryConfig, BinaryModel, binary_loss, binary_step, frozen_teacher, load_binary, train_binary
from exifkit.errors import SettingError
from exifkit.model import Extractor, ExtractorConfig
from exifkit.train import load_checkpoint

TINY = ExtractorConfig(patch_size=16, width=4, convs_per_stage=(1, 1, 1), transformer_depth=1, heads=2,
                       head_dim=4, mlp_dim=8)


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)


def test_blur_and_jpeg_keep_shape_and_dtype(image):
    for out in (gaussian_blur(image, 0.7), jpeg(image, 95, "pillow"), jpeg(image, 95, "opencv")):
        assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(gaussian_blur(image, 0.0), image)
    assert not np.array_equal(jpeg(image, 90, "opencv"), image)


def test_augment_is_seeded_and_resizes_to_a_square(image):
    always = AugmentConfig(resize_p=1.0, blur_p=1.0, jpeg_p=1.0)
    a = augment(image, np.random.default_rng(3), always)
    b = augment(image, np.random.default_rng(3), always)
    assert np.array_equal(a, b) and a.dtype == np.uint8
    assert a.shape[0] == a.shape[1] and 64 <= a.shape[0] <= 128
    never = AugmentConfig(resize_p=0, blur_p=0, jpeg_p=0)
    assert np.array_equal(augment(image, np.random.default_rng(3), never), image)


def test_regulariser_is_the_sum_of_stage_distances_and_vanishes_at_alpha_zero():
    from exifkit.model.extractor import ExtractorOutput

    def output(stage1, stage2, vectors):
        return ExtractorOutput(torch.zeros(2, 3), [torch.full((2, 4, 3, 3), stage1), torch.full((2, 8, 2, 2), stage2)],
                               torch.full((2, 5, 6), vectors))

    # squared distances by hand: stage 1 differs by 1 everywhere, stage 2 by 2, the patch vectors by 0.5
    out, ref = output(1.0, 2.0, 0.5), output(0.0, 0.0, 0.0)
    logits, y = torch.zeros(2, 2), torch.tensor([0, 1])  # uniform logits: cross-entropy ln 2
    total, ce, reg, dists = binary_loss(logits, y, out, ref, alpha=0.05)
    assert [d.item() for d in dists] == [1.0, 4.0, 0.25]
    assert reg.item() == pytest.approx(5.25) and ce.item() == pytest.approx(np.log(2))
    assert total.item() == pytest.approx(np.log(2) + 0.05 * 5.25)
    total0, ce0, _, _ = binary_loss(logits, y, out, ref, alpha=0.0)
    assert total0.item() == pytest.approx(np.log(2))


def test_frozen_extractor_gets_no_gradient_and_stays_in_eval():
    frozen = frozen_teacher(Extractor(TINY).train())
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    model = BinaryModel(TINY).train()
    assert not frozen.training and all(not p.requires_grad for p in frozen.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    binary_step(model, frozen, opt, torch.randn(2, 2, 3, 16, 16), torch.tensor([0, 1]), 0.05)
    assert all(p.grad is None for p in frozen.parameters()) and not frozen.training
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())
    assert not any(k.startswith("frozen") for k in model.state_dict())  # the teacher is not part of the model


def test_a_checkpoint_of_the_old_layout_with_its_teacher_inside_still_loads_and_resumes(tmp_path):
    """Before the teacher left the model, checkpoints carried it as ``frozen.*``; they load as they are."""
    images, labels = _images()
    frozen = Extractor(TINY)
    cfg = BinaryConfig(extractor=TINY, steps=4, batch_images=3, n_patches=2, checkpoint_every=2, device="cpu")
    train_binary(cfg, frozen, images, labels, tmp_path / "new", progress=False)
    train_binary(replace(cfg, steps=2), frozen, images, labels, tmp_path / "old", progress=False)
    state = load_checkpoint(tmp_path / "old" / "last.pt")
    assert not any(k.startswith("frozen.") for k in state["model"]) and state["config"]["teacher"]
    state["model"].update({f"frozen.{k}": v for k, v in frozen.state_dict().items()})
    del state["config"]["teacher"]
    torch.save(state, tmp_path / "old" / "last.pt")
    assert load_binary(tmp_path / "old" / "last.pt").classifier.weight.shape == (2, TINY.feature_dim)
    train_binary(cfg, frozen, images, labels, tmp_path / "old", resume=True, progress=False)
    a, b = load_checkpoint(tmp_path / "new" / "last.pt"), load_checkpoint(tmp_path / "old" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    from exifkit.train import ResumeMismatchError

    with pytest.raises(ResumeMismatchError, match="teacher"):
        train_binary(replace(cfg, steps=6), Extractor(TINY), images, labels, tmp_path / "old", resume=True,
                     progress=False)


def _images():
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(8)], np.array([0, 1] * 4)


def test_binary_training_resumes_exactly(tmp_path):
    images, labels = _images()
    frozen = Extractor(TINY)
    cfg = BinaryConfig(extractor=TINY, steps=4, batch_images=3, n_patches=2, checkpoint_every=2, log_every=1,
                       device="cpu", augment=AugmentConfig(resize_p=0.5, blur_p=0.5, jpeg_p=0.5))
    train_binary(cfg, frozen, images, labels, tmp_path / "a", progress=False)
    train_binary(BinaryConfig(**{**cfg.__dict__, "steps": 2}), frozen, images, labels, tmp_path / "b", progress=False)
    import exifkit.binary as binary

    real_step, calls = binary.binary_step, []
    binary.binary_step = lambda *a, **k: calls.append(1) or real_step(*a, **k)
    try:
        train_binary(cfg, frozen, images, labels, tmp_path / "b", resume=True, progress=False)
    finally:
        binary.binary_step = real_step
    assert len(calls) == 2  # steps 3 and 4: continued from the checkpoint, not retrained from step 0
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for i, moments in a["optimizer"]["state"].items():
        assert all(torch.equal(v, b["optimizer"]["state"][i][k]) for k, v in moments.items())
    from exifkit.train import ResumeMismatchError

    with pytest.raises(ResumeMismatchError, match="alpha: 0.05 in the checkpoint, 0.5 now"):
        train_binary(BinaryConfig(**{**cfg.__dict__, "steps": 6, "alpha": 0.5}), frozen, images, labels,
                     tmp_path / "b", resume=True, progress=False)


def test_a_binary_checkpoint_loads_with_the_extractor_it_was_trained_with(tmp_path):
    images, labels = _images()
    cfg = BinaryConfig(extractor=TINY, steps=1, batch_images=2, n_patches=2, device="cpu")
    result = train_binary(cfg, Extractor(TINY), images, labels, tmp_path, progress=False)
    assert load_binary(result.checkpoint).extractor.config == TINY  # no configuration needed
    other = replace(TINY, width=8)
    with pytest.raises(SettingError, match="width 4 not 8"):
        load_binary(result.checkpoint, other)


def test_the_authors_binary_checkpoint_scores_through_the_same_model(tmp_path):
    from exifkit.binary import from_official
    from exifkit.model import load_official
    from tests.model.reference_net import reference_forward, synthetic_official_state

    frozen, trained = synthetic_official_state(1), synthetic_official_state(2)
    blob = {f"module.diffusionextractor_pretrained.{k}": v for k, v in frozen.items()}
    blob |= {f"module.diffusionextractor_random.{k}": v for k, v in trained.items()}
    fc_w, fc_b = torch.randn(2, 528), torch.randn(2)
    blob |= {"module.fc.weight": fc_w, "module.fc.bias": fc_b}
    torch.save({"state_net": blob}, tmp_path / "bc.pth")
    model = from_official(load_official(tmp_path / "bc.pth"))
    x = torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        expected = 1 - torch.softmax(reference_forward(trained, x) @ fc_w.T + fc_b, dim=1)[:, :1]
        torch.testing.assert_close(model.fake_probability(x), expected, atol=1e-4, rtol=1e-4)


def test_the_binary_detector_answers_as_a_scikit_learn_classifier():
    torch.manual_seed(0)
    model = BinaryModel(TINY).eval()
    x = torch.randn(5, 4, 3, 16, 16)
    proba = model.predict_proba(x)
    assert proba.shape == (5, 2) and list(model.classes_) == [0, 1]
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(proba[:, 1], model.fake_probability(x)[:, 0].numpy(), atol=1e-7)
    threshold = float(np.median(proba[:, 1]))
    assert model.predict(x, threshold).tolist() == (proba[:, 1] > threshold).astype(int).tolist()
    assert 0 < model.predict(x, threshold).sum() < 5


def test_format_aligned_augmentation_crops_and_always_reencodes(image):
    big = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    aligned = AugmentConfig(crop=128, resize_p=0, blur_p=0, jpeg_p=1.0, jpeg_quality=(60, 100))
    outs = [augment(big, np.random.default_rng(k), aligned) for k in range(6)]
    assert {o.shape for o in outs} == {(128, 128, 3)}
    assert all(not np.array_equal(o, big[:128, :128]) for o in outs)  # re-encoded, never the raw pixels
    assert augment(image, np.random.default_rng(0), aligned).shape == (90, 120, 3)  # a smaller image is kept whole


def test_balanced_repeats_the_minority_class_without_copying():
    from exifkit.binary import balanced

    images = [np.full((2, 2, 3), i, np.uint8) for i in range(7)]
    labels = np.array([0, 0, 0, 0, 0, 1, 1])
    out, y = balanced(images, labels)
    assert (y == 0).sum() == (y == 1).sum() == 5
    assert all(any(o is i for i in images) for o in out)


def test_validation_split_is_per_class_and_source_and_keeps_files_whole():
    from exifkit.binary import validation_split
    from exifkit.data.manifest import Entry
    from exifkit.data.suites import Sample

    def sample(i, label, group, view=None):
        return Sample(Entry(path=f"{group}/{i}.png", sha256=f"{group}{i}", label="fake" if label else "real"),
                      label, group, view)

    samples = [sample(i, 0, "camera") for i in range(40)] + [sample(i, 1, "gan") for i in range(20)]
    samples += [sample(i, 1, "grid", (0, 0, t, t)) for i in range(10) for t in (1, 2, 3, 4)]  # 4 tiles per file
    train, val = validation_split(samples, 0.2, seed=0)
    assert not {s.entry.sha256 for s in train} & {s.entry.sha256 for s in val}
    assert len(train) + len(val) == len(samples)
    by_group = {g: sum(s.group == g for s in val) for g in ("camera", "gan", "grid")}
    assert by_group == {"camera": 8, "gan": 4, "grid": 8}  # 2 grid files, all 4 tiles each
    assert validation_split(samples, 0.2, seed=0) == (train, val)
    assert validation_split(samples, 0.0, seed=0) == (samples, [])


def test_bf16_binary_step_takes_fp32_losses():
    from exifkit.binary import binary_step

    torch.manual_seed(0)
    model, teacher = BinaryModel(TINY), frozen_teacher(Extractor(TINY))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    x, y = torch.randn(4, 4, 3, 16, 16), torch.tensor([0, 1, 0, 1])
    logits, loss, ce, reg, dists = binary_step(model, teacher, opt, x, y, 0.05, precision="bf16")
    assert logits.dtype == loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(d.dtype == torch.float32 for d in dists) and len(dists) == len(TINY.convs_per_stage) + 1


def test_validation_keeps_the_best_step_and_training_returns_it(tmp_path):
    """Every checkpoint scores the validation images; best.pt holds the step with the highest macro AUC
    in validation.csv, and it is the checkpoint a finished run stands for."""
    import pandas as pd

    from exifkit.binary import ValidationSet, load_binary, validation_auc

    images, labels = _images()
    held = ValidationSet([torch.randn(2, 3, 16, 16) for _ in range(6)], np.array([0, 0, 0, 1, 1, 1]),
                         ["real"] * 3 + ["gan"] * 2 + ["diffusion"])
    cfg = BinaryConfig(extractor=TINY, steps=6, batch_images=4, n_patches=2, checkpoint_every=2, lr=0.05,
                       device="cpu", precision="fp32", augment=AugmentConfig(resize_p=0, blur_p=0, jpeg_p=0))
    result = train_binary(cfg, Extractor(TINY), images, labels, tmp_path / "run", progress=False, validation=held)
    log = pd.read_csv(tmp_path / "run" / "validation.csv")
    assert list(log["step"]) == [2, 4, 6]
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["step"] == int(log.loc[log["paired_macro_auc"].idxmax(), "step"])
    assert "optimizer" not in best and result.checkpoint == tmp_path / "run" / "best.pt"
    model = load_binary(result.checkpoint, TINY)
    assert validation_auc(model, held) == pytest.approx(log["paired_macro_auc"].max(), abs=1e-4)
    # a fresh run in the same folder starts its own record instead of keeping an earlier run's best step
    torch.save({**best, "step": 999, "validation_score": 2.0}, tmp_path / "run" / "best.pt")
    train_binary(BinaryConfig(**{**cfg.__dict__, "steps": 2}), Extractor(TINY), images, labels, tmp_path / "run",
                 progress=False, validation=held)
    assert load_checkpoint(tmp_path / "run" / "best.pt")["step"] == 2


def test_binary_init_pretext_starts_at_the_frozen_weights(tmp_path):
    """With init = "pretext" the regulariser starts at zero (both networks equal); an unknown init is refused."""
    import pandas as pd

    images, labels = _images()
    frozen = Extractor(TINY)
    cfg = BinaryConfig(extractor=TINY, steps=1, batch_images=4, n_patches=2, log_every=1, init="pretext",
                       device="cpu", precision="fp32", augment=AugmentConfig(resize_p=0, blur_p=0, jpeg_p=0))
    train_binary(cfg, frozen, images, labels, tmp_path / "p", progress=False)
    assert pd.read_csv(tmp_path / "p" / "metrics.csv")["reg"].iloc[0] == pytest.approx(0.0, abs=1e-8)
    train_binary(BinaryConfig(**{**cfg.__dict__, "init": "random"}), frozen, images, labels, tmp_path / "r",
                 progress=False)
    assert pd.read_csv(tmp_path / "r" / "metrics.csv")["reg"].iloc[0] > 1e-4
    with pytest.raises(ValueError, match="init"):
        train_binary(BinaryConfig(**{**cfg.__dict__, "init": "imagenet"}), frozen, images, labels, tmp_path / "x",
                     progress=False)


def test_validation_pairs_fakes_with_the_reals_a_test_suite_gives_them():
    from exifkit.binary import suite_pairing
    from exifkit.data.manifest import Entry
    from exifkit.data.suites import Sample

    def s(name, label, group, kind):
        return Sample(Entry(path=name, sha256=name, kind=kind), label, group)

    samples = [s("a", 0, "cnndetection real", "cnndetection_testset_web"), s("b", 1, "biggan", "cnndetection_testset_web"),
               s("c", 0, "camera (pretext side)", "camera"), s("d", 0, "natural (ImageNet)", "natural"),
               s("e", 1, "glid3", "generated"), s("f", 1, "sd15", "generated")]
    assert suite_pairing(samples) == {"biggan": ["cnndetection real"],
                                      "glid3": ["camera (pretext side)", "natural (ImageNet)"],
                                      "sd15": ["camera (pretext side)", "natural (ImageNet)"]}


def test_a_study_trains_the_ablation_once_when_alpha_is_already_zero(tmp_path):
    from exifkit.binary import run_names, load_binary_runs
    from exifkit.errors import MissingInputError

    assert run_names(0.05) == ["alpha=0.05", "alpha=0"]
    assert run_names(0.0) == ["alpha=0"]
    with pytest.raises(MissingInputError, match="alpha=0.05: no trained binary run with its threshold here"):
        load_binary_runs(tmp_path, 0.05, TINY)
