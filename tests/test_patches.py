import numpy as np
import torch

from exifkit.patches import CLIP_MEAN, CLIP_STD, grid_patches, random_patches, to_tensor


def test_grid_is_centre_cropped_raster_order():
    img = np.zeros((150, 200, 3), dtype=np.uint8)
    # label each 64x64 cell of the centred 128x192 crop (offsets 11, 4) with its raster index
    for r in range(2):
        for c in range(3):
            img[11 + 64 * r:11 + 64 * (r + 1), 4 + 64 * c:4 + 64 * (c + 1)] = 10 * (3 * r + c)
    p = grid_patches(img, 64)
    assert p.shape == (6, 64, 64, 3)
    assert [int(q[0, 0, 0]) for q in p] == [0, 10, 20, 30, 40, 50]
    assert (p == p[:, :1, :1]).all()  # each patch is exactly one cell
    assert len(grid_patches(img, 64, max_patches=4)) == 4


def test_small_images_are_resized_to_one_patch():
    tiny = np.full((40, 100, 3), 77, dtype=np.uint8)
    assert grid_patches(tiny, 64).shape == (1, 64, 64, 3)
    assert random_patches(tiny, 3, 64, np.random.default_rng(0)).shape == (3, 64, 64, 3)


def test_random_patches_are_seeded_crops_of_the_image():
    img = np.random.default_rng(1).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    a = random_patches(img, 16, 32, np.random.default_rng(5))
    b = random_patches(img, 16, 32, np.random.default_rng(5))
    assert a.shape == (16, 32, 32, 3) and np.array_equal(a, b)
    windows = {img[y:y + 32, x:x + 32].tobytes() for y in range(69) for x in range(89)}
    assert all(p.tobytes() in windows for p in a)


def test_normalisation_uses_clip_statistics():
    p = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    p[..., 0] = 255
    t = to_tensor(p)
    assert t.shape == (2, 3, 4, 4) and t.dtype == torch.float32
    assert torch.allclose(t[:, 0], torch.tensor((1 - CLIP_MEAN[0]) / CLIP_STD[0]))
    assert torch.allclose(t[:, 2], torch.tensor(-CLIP_MEAN[2] / CLIP_STD[2]))


def test_read_only_arrays_become_tensors_without_a_warning():
    import warnings

    from exifkit.patches import ensure_min_side, grid_patches, to_tensor

    small = ensure_min_side(np.zeros((10, 10, 3), np.uint8), 16)  # a view of Pillow's buffer
    assert not small.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert to_tensor(grid_patches(small, 16)).shape == (1, 3, 16, 16)
