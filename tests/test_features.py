import numpy as np
import torch

from exifkit.features import cached_outputs, extract_features
from exifkit.model import Extractor, ExtractorConfig

TINY = ExtractorConfig(patch_size=16, width=4, convs_per_stage=(1, 1, 1), transformer_depth=1, heads=2,
                       head_dim=4, mlp_dim=8)


def _samples(demo_store, n=6):
    from exifkit.data.suites import Sample

    cams = [e for e in demo_store.manifest if e.kind == "camera"][:n]
    return [Sample(e, 0, "camera") for e in cams]


def _counting(model):
    calls = []  # images through the Transformer
    original = model.aggregate

    def counting(tokens):
        calls.append(tokens.shape[0])
        return original(tokens)

    model.aggregate = counting
    return calls


def test_cache_is_reused_and_invalidated_by_new_weights(tmp_path, demo_store):
    samples = _samples(demo_store)
    torch.manual_seed(0)
    model = Extractor(TINY).eval()
    calls = _counting(model)
    first, failures = cached_outputs(model, samples, demo_store, tmp_path, max_patches=8, progress=False)
    assert not failures and list(first) == [s.key for s in samples] and sum(calls) == 6
    assert all(v.shape == (TINY.feature_dim,) for v in first.values())
    second, _ = cached_outputs(model, samples, demo_store, tmp_path, max_patches=8, progress=False)
    assert sum(calls) == 6  # nothing recomputed
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    with torch.no_grad():
        model.stem.conv.bias[0] += 1.0  # new weights (one channel: LayerNorm ignores a shift of all)
    third, _ = cached_outputs(model, samples, demo_store, tmp_path, max_patches=8, progress=False)
    assert sum(calls) == 12 and not np.allclose(first[samples[0].key], third[samples[0].key])


def test_one_key_scheme_for_every_consumer(tmp_path, demo_store):
    """Notebooks 03/04 read raw files with protocol None and the robustness tables with the "raw" protocol:
    the same pixels, so one entry; a protocol with a step, another patch cap, or the binary detector's
    P(fake) each get their own."""
    from exifkit.binary import BinaryModel
    from exifkit.perturb import load_protocols

    samples, protocols = _samples(demo_store, 3), load_protocols()
    torch.manual_seed(0)
    model = Extractor(TINY).eval()
    calls = _counting(model)
    cached_outputs(model, samples, demo_store, tmp_path, max_patches=8, progress=False)
    cached_outputs(model, samples, demo_store, tmp_path, max_patches=8, protocol=protocols["raw"], progress=False)
    assert sum(calls) == 3
    cached_outputs(model, samples, demo_store, tmp_path, max_patches=8, protocol=protocols["jpeg70"],
                   progress=False)
    cached_outputs(model, samples, demo_store, tmp_path, max_patches=4, progress=False)
    assert sum(calls) == 9
    binary = BinaryModel(TINY).eval()
    probs, _ = cached_outputs(binary, samples, demo_store, tmp_path, max_patches=8, progress=False)
    assert all(isinstance(p, float) and 0 < p < 1 for p in probs.values())
    again, _ = cached_outputs(binary, samples, demo_store, tmp_path, max_patches=8, progress=False)
    assert again == probs
    tags = sorted(p.read_text().split(" v1 ")[0] for p in tmp_path.glob("*/*/protocol.txt"))
    assert tags == ["feature grid16 cap4", "feature grid16 cap8", "feature grid16 cap8", "pfake grid16 cap8"]


def test_batched_features_equal_one_image_at_a_time_and_the_reference_mode(demo_store):
    samples = _samples(demo_store, 4)
    model = Extractor(TINY).eval()
    # batches of 20 patches split images of 8 across batches
    together, _, _ = extract_features(model, samples, demo_store, max_patches=8, batch_patches=20, progress=False)
    alone = np.concatenate([extract_features(model, [s], demo_store, max_patches=8, progress=False)[0]
                            for s in samples])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    model.mode = "reference"
    reference, _, _ = extract_features(model, samples, demo_store, max_patches=8, progress=False)
    np.testing.assert_allclose(together, reference, atol=1e-5)


def test_unreadable_files_are_reported_not_dropped(tmp_path, demo_store):
    from dataclasses import replace

    from exifkit.data.manifest import DataStore, Manifest
    from exifkit.data.suites import Sample

    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    good = _samples(demo_store, 1)[0]
    broken = Sample(replace(good.entry, path="broken.jpg", sha256="0" * 64), 0, "camera")
    store = DataStore(Manifest("t", [good.entry]), embedded_root=demo_store.embedded_root, mirrors=[tmp_path])
    model = Extractor(TINY).eval()
    feats, ok, failures = extract_features(model, [good, broken], store, max_patches=4, progress=False)
    assert ok.tolist() == [True, False] and len(feats) == 1 and "broken.jpg" in failures.to_markdown()


def test_folder_features_equal_manifest_features_and_report_bad_files(tmp_path, demo_store):
    from exifkit.features import folder_features

    samples = _samples(demo_store, 3)
    model = Extractor(TINY).eval()
    expected, _, _ = extract_features(model, samples, demo_store, max_patches=None, progress=False)
    (tmp_path / "empty.png").write_bytes(b"")
    paths = [demo_store.path(s.entry) for s in samples]
    feats, ok, failures = folder_features(model, paths[:2] + [tmp_path / "empty.png"] + paths[2:], batch_patches=50,
                                          progress=False)
    assert ok.tolist() == [True, True, False, True] and "empty.png" in failures.to_markdown()
    np.testing.assert_allclose(feats, expected, atol=1e-5)


def test_a_pixel_memo_decodes_each_image_once_for_many_extractors_and_changes_no_feature(demo_store, monkeypatch):
    import exifkit.features as features
    from exifkit.features import PatchMemo
    from exifkit.perturb import load_protocols

    samples = _samples(demo_store, 4)
    protocol = load_protocols()["aligned_jpeg95"]
    torch.manual_seed(0)
    a, b = Extractor(TINY).eval(), Extractor(TINY).eval()
    plain = [extract_features(m, samples, demo_store, max_patches=8, transform=protocol, progress=False)[0]
             for m in (a, b)]
    real, decoded = features.load_sample, []
    monkeypatch.setattr(features, "load_sample", lambda s, st: decoded.append(s.key) or real(s, st))
    memo = PatchMemo()
    shared = [extract_features(m, samples, demo_store, max_patches=8, transform=protocol, progress=False, memo=memo)[0]
              for m in (a, b)]
    assert sorted(decoded) == sorted(s.key for s in samples)  # once each, not once per extractor
    for p, s in zip(plain, shared):
        np.testing.assert_array_equal(p, s)


def test_shared_outputs_decode_each_image_once_per_chunk_and_equal_separate_calls(demo_store, tmp_path, monkeypatch):
    import exifkit.features as features
    from exifkit.features import shared_outputs
    from exifkit.perturb import load_protocols

    samples = _samples(demo_store, 5)
    protocol = load_protocols()["blur1.0"]
    torch.manual_seed(0)
    a, b = Extractor(TINY).eval(), Extractor(TINY).eval()
    separate = [cached_outputs(m, samples, demo_store, tmp_path / "separate", max_patches=8, protocol=protocol,
                               progress=False)[0] for m in (a, b)]
    real, decoded = features.load_sample, []
    monkeypatch.setattr(features, "load_sample", lambda s, st: decoded.append(s.key) or real(s, st))
    shared = shared_outputs([a, b], samples, demo_store, tmp_path / "shared", max_patches=8, protocol=protocol,
                            progress=False, chunk=2)
    assert sorted(decoded) == sorted(s.key for s in samples)  # once each, for both networks
    for (values, failures), expected in zip(shared, separate):
        assert not failures and list(values) == list(expected)
        for key in expected:
            np.testing.assert_array_equal(values[key], expected[key])


def test_each_inference_precision_has_its_own_cache_entries_and_float32_keeps_its_old_key(tmp_path, demo_store):
    from exifkit.features import _cache_tag
    from exifkit.model import winograd

    samples = _samples(demo_store, 2)
    torch.manual_seed(0)
    model = Extractor(ExtractorConfig(patch_size=16, width=16, convs_per_stage=(1, 1, 1), transformer_depth=1,
                                      heads=2, head_dim=4, mlp_dim=8), precision="fp32").eval()
    fp32, _ = cached_outputs(model, samples, demo_store, tmp_path, max_patches=8, progress=False)
    model.precision = "auto"
    auto, _ = cached_outputs(model, samples, demo_store, tmp_path, max_patches=8, progress=False)
    folders = {p.read_text().strip() for p in tmp_path.rglob("protocol.txt")}
    assert _cache_tag("feature", 16, 8, None) == "feature grid16 cap8 v1 raw"  # as before bf16 existed
    if winograd.bf16_available():
        assert folders == {"feature grid16 cap8 v1 raw", "feature grid16 cap8 v1 raw bf16"}
        assert any(not np.array_equal(fp32[k], auto[k]) for k in fp32)
    else:
        assert folders == {"feature grid16 cap8 v1 raw"}
