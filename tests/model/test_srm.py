import numpy as np
import torch

from exifkit.model.srm import SRMFilterBank, srm_kernels

# The 30 high-pass residual kernels of the spatial rich model, written out from J. Fridrich and
# J. Kodovsky, "Rich models for steganalysis of digital images", IEEE TIFS 7(3), 2012, Section II
# and Fig. 2: eight first-order ("1"), four second-order ("2", /2), eight third-order ("3", /3),
# four EDGE3x3 and SQUARE3x3 ("/4"), four EDGE5x5 and SQUARE5x5 ("/12"). Each is the correlation
# kernel whose output is the residual at the centre pixel; 3x3 kernels sit in a 5x5 grid.
PUBLISHED = [
    # first order: -x_ij plus one of its eight neighbours
    ("0 0 0 / 0 -1 1 / 0 0 0", 1), ("0 0 1 / 0 -1 0 / 0 0 0", 1), ("0 1 0 / 0 -1 0 / 0 0 0", 1),
    ("1 0 0 / 0 -1 0 / 0 0 0", 1), ("0 0 0 / 1 -1 0 / 0 0 0", 1), ("0 0 0 / 0 -1 0 / 1 0 0", 1),
    ("0 0 0 / 0 -1 0 / 0 1 0", 1), ("0 0 0 / 0 -1 0 / 0 0 1", 1),
    # second order: horizontal, vertical and both diagonals
    ("0 0 0 / 1 -2 1 / 0 0 0", 2), ("0 1 0 / 0 -2 0 / 0 1 0", 2), ("1 0 0 / 0 -2 0 / 0 0 1", 2),
    ("0 0 1 / 0 -2 0 / 1 0 0", 2),
    # third order: x_{i,j-1} - 3 x_ij + 3 x_{i,j+1} - x_{i,j+2} in each of eight directions
    ("0 0 0 0 0 / 0 0 0 0 0 / 0 1 -3 3 -1 / 0 0 0 0 0 / 0 0 0 0 0", 3),
    ("0 0 0 0 0 / 0 0 0 0 0 / -1 3 -3 1 0 / 0 0 0 0 0 / 0 0 0 0 0", 3),
    ("0 0 0 0 0 / 0 0 1 0 0 / 0 0 -3 0 0 / 0 0 3 0 0 / 0 0 -1 0 0", 3),
    ("0 0 -1 0 0 / 0 0 3 0 0 / 0 0 -3 0 0 / 0 0 1 0 0 / 0 0 0 0 0", 3),
    ("0 0 0 0 0 / 0 1 0 0 0 / 0 0 -3 0 0 / 0 0 0 3 0 / 0 0 0 0 -1", 3),
    ("-1 0 0 0 0 / 0 3 0 0 0 / 0 0 -3 0 0 / 0 0 0 1 0 / 0 0 0 0 0", 3),
    ("0 0 0 0 0 / 0 0 0 1 0 / 0 0 -3 0 0 / 0 3 0 0 0 / -1 0 0 0 0", 3),
    ("0 0 0 0 -1 / 0 0 0 3 0 / 0 0 -3 0 0 / 0 1 0 0 0 / 0 0 0 0 0", 3),
    # EDGE3x3: the SQUARE3x3 kernel with one side cut off, four orientations
    ("-1 2 -1 / 2 -4 2 / 0 0 0", 4), ("-1 2 0 / 2 -4 0 / -1 2 0", 4), ("0 0 0 / 2 -4 2 / -1 2 -1", 4),
    ("0 2 -1 / 0 -4 2 / 0 2 -1", 4),
    ("-1 2 -1 / 2 -4 2 / -1 2 -1", 4),  # SQUARE3x3
    # EDGE5x5: three rows (or columns) of SQUARE5x5, four orientations
    ("-1 2 -2 2 -1 / 2 -6 8 -6 2 / -2 8 -12 8 -2 / 0 0 0 0 0 / 0 0 0 0 0", 12),
    ("-1 2 -2 0 0 / 2 -6 8 0 0 / -2 8 -12 0 0 / 2 -6 8 0 0 / -1 2 -2 0 0", 12),
    ("0 0 0 0 0 / 0 0 0 0 0 / -2 8 -12 8 -2 / 2 -6 8 -6 2 / -1 2 -2 2 -1", 12),
    ("0 0 -2 2 -1 / 0 0 8 -6 2 / 0 0 -12 8 -2 / 0 0 8 -6 2 / 0 0 -2 2 -1", 12),
    ("-1 2 -2 2 -1 / 2 -6 8 -6 2 / -2 8 -12 8 -2 / 2 -6 8 -6 2 / -1 2 -2 2 -1", 12),  # SQUARE5x5
]


def _grid(text: str, divisor: int) -> np.ndarray:
    k = np.array([[float(v) for v in row.split()] for row in text.split("/")]) / divisor
    out = np.zeros((5, 5))
    off = (5 - len(k)) // 2
    out[off:off + len(k), off:off + len(k)] = k
    return out


def test_the_bank_is_exactly_the_published_thirty():
    key = lambda k: tuple(np.round(k, 12).ravel())  # noqa: E731
    ours = {key(k) for k in srm_kernels()}
    published = {key(_grid(*p)) for p in PUBLISHED}
    assert len(published) == len(PUBLISHED) == 30
    missing = [text for text, d in PUBLISHED if key(_grid(text, d)) not in ours]
    assert not missing, f"kernels of the published set not in the bank: {missing}"
    assert len(ours) == 30 and srm_kernels().shape == (30, 5, 5)


def test_bank_is_per_channel_and_fixed():
    bank = SRMFilterBank()
    assert not list(bank.parameters())  # a buffer, never trained
    x = torch.zeros(1, 3, 16, 16)
    x[0, 1] = torch.rand(16, 16)  # only the green channel has content
    y = bank(x)
    assert y.shape == (1, 90, 16, 16)
    assert y[0, :30].abs().max() == 0 and y[0, 60:].abs().max() == 0 and y[0, 30:60].abs().max() > 0
    flat = torch.full((1, 3, 16, 16), 0.7)
    assert bank(flat)[..., 2:-2, 2:-2].abs().max() < 1e-6  # a flat image has no residual inside


def test_residual_energy_is_zero_on_flat_images_and_falls_under_strong_jpeg():
    from exifkit.augment import jpeg
    from exifkit.model.srm import FAMILY_START, residual_energy

    flat = np.full((64, 64, 3), 128, np.uint8)
    assert set(residual_energy(flat)) == set(FAMILY_START) and max(residual_energy(flat).values()) < 1e-3
    noisy = np.random.default_rng(0).integers(0, 256, (128, 128, 3)).astype(np.uint8)
    before, after = residual_energy(noisy), residual_energy(jpeg(noisy, 20))
    assert all(after[k] < before[k] for k in before)
