"""Each protocol does what its spec says, checked on the output itself."""

import io

import numpy as np
import pytest
from PIL import Image

from exifkit.perturb import load_protocols

# IJG base luminance table (Annex K of the JPEG standard), in zigzag-free row order
BASE_LUMA = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                      14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
                      92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])


def ijg_table(quality: int) -> np.ndarray:
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip((BASE_LUMA * scale + 50) // 100, 1, 255)


def quality_from_tables(tables) -> int:
    """The IJG quality whose scaled standard luminance table is the file's (order-insensitive, since
    libraries differ in whether they report zigzag or natural order)."""
    luma = np.sort(np.array(tables[0]))
    matches = [q for q in range(1, 101) if np.array_equal(np.sort(ijg_table(q)), luma)]
    assert len(matches) == 1, matches
    return matches[0]


@pytest.fixture(scope="module")
def protocols():
    return load_protocols()


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)


@pytest.mark.parametrize("pid, quality", [("jpeg95", 95), ("jpeg90", 90), ("jpeg80", 80), ("jpeg70", 70),
                                          ("jpeg60", 60)])
def test_jpeg_protocols_write_the_stated_quality(protocols, image, monkeypatch, pid, quality):
    written = []
    real_save = Image.Image.save

    def spy(self, fp, format=None, **params):  # keep the bytes the protocol encodes
        real_save(self, fp, format=format, **params)
        if isinstance(fp, io.BytesIO):
            written.append(fp.getvalue())

    monkeypatch.setattr(Image.Image, "save", spy)
    out = protocols[pid](image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert len(written) == 1
    assert quality_from_tables(Image.open(io.BytesIO(written[0])).quantization) == quality


def test_blur_matches_a_gaussian_on_an_impulse(protocols):
    img = np.zeros((41, 41, 3), dtype=np.uint8)
    img[20, 20] = 255
    out = protocols["blur2.0"](img).astype(float)[..., 0]
    x = np.arange(41) - 20
    g = np.exp(-x ** 2 / (2 * 2.0 ** 2))
    expected = 255 * np.outer(g, g) / np.outer(g, g).sum()
    assert np.abs(out - expected).max() <= 1.0  # uint8 rounding
    assert protocols["blur0.5"](img)[20, 20, 0] > protocols["blur1.0"](img)[20, 20, 0] > out[20, 20]


def test_resize_protocols_scale_both_sides(protocols, image):
    assert protocols["down0.5"](image).shape == (32, 48, 3)
    assert protocols["down0.75"](image).shape == (48, 72, 3)
    assert protocols["up1.5"](image).shape == (96, 144, 3)
    flat = np.full((64, 96, 3), 77, dtype=np.uint8)
    assert (protocols["down0.5"](flat) == 77).all()


def test_aligned_protocol_gives_every_image_the_same_size_and_format(protocols):
    big = np.random.default_rng(1).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    small = np.random.default_rng(2).integers(0, 256, (248, 300, 3), dtype=np.uint8)
    p = protocols["aligned_jpeg95"]
    assert p.aligned and p(big).shape == p(small).shape == (224, 224, 3)


def test_every_protocol_has_a_versioned_key(protocols):
    keys = {p.key for p in protocols.values()}
    assert len(keys) == len(protocols)
    assert protocols["jpeg95"].key == "jpeg95@v1[jpeg:quality=95]"
    assert {"raw", "jpeg95", "blur1.0", "down0.5", "aligned_jpeg95"} <= set(protocols)


def test_a_protocol_made_in_a_notebook_keys_like_one_from_the_file(protocols):
    from exifkit.errors import SettingError
    from exifkit.perturb import make_protocol

    made = make_protocol("jpeg90", {"version": 1, "steps": [{"op": "jpeg", "quality": 90}]})
    assert made.key == protocols["jpeg90"].key
    assert make_protocol("jpeg50", {"version": 1, "steps": [{"op": "jpeg", "quality": 50}]}).key != made.key
    with pytest.raises(SettingError, match="unknown operation 'sharpen'"):
        make_protocol("x", {"version": 1, "steps": [{"op": "sharpen"}]})
    with pytest.raises(KeyError):
        make_protocol("x", {"steps": []})  # a version is what invalidates cached features: required


def _photo_like(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth structure plus sensor-like noise, so JPEG blocks and blur edges both have work to do."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(x / 17.0 + seed) * np.cos(y / 23.0)
    image = base[..., None] + np.array([0, 25, -25]) * np.cos(x / 41.0)[..., None] + rng.normal(0, 12, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(300, 437), (129, 64), (64, 64), (517, 1003), (90, 250)])
@pytest.mark.parametrize("size, cap", [(64, 1), (64, 4), (64, 9), (32, 5), (64, 1000), (64, None)])
def test_patches_of_a_protocol_equal_the_patches_of_the_whole_perturbed_image(protocols, shape, size, cap):
    from exifkit.patches import grid_patches
    from exifkit.perturb import make_protocol

    chain = make_protocol("blur_then_jpeg", {"version": 1, "steps": [{"op": "blur", "sigma": 1.5},
                                                                     {"op": "jpeg", "quality": 75}]})
    image = _photo_like(*shape, seed=shape[1])
    for protocol in [*protocols.values(), chain]:
        expected = grid_patches(protocol(image), size, cap)
        got = protocol.patches(image, size, cap)
        assert got.shape == expected.shape and np.array_equal(got, expected), (protocol.id, shape, size, cap)


def test_a_capped_blur_or_jpeg_runs_only_on_the_rows_its_patches_come_from(protocols, monkeypatch):
    from exifkit import perturb

    seen, apply = [], perturb.Step.apply
    monkeypatch.setattr(perturb.Step, "apply", lambda self, image: seen.append(image.shape[:2]) or apply(self, image))
    image = _photo_like(1200, 1600, seed=1)
    for pid in ("blur3.0", "jpeg90"):
        seen.clear()
        protocols[pid].patches(image, 64, 4)
        (h, w), = seen
        assert h * w < image.shape[0] * image.shape[1] / 10, (pid, h, w)
