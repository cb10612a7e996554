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
