import numpy as np
import torch

from exifkit.model.srm import SRMFilterBank, srm_kernels


def test_thirty_distinct_zero_sum_kernels():
    k = srm_kernels()
    assert k.shape == (30, 5, 5)
    np.testing.assert_allclose(k.sum(axis=(1, 2)), 0, atol=1e-12)
    assert len({kk.tobytes() for kk in k}) == 30


def test_normalisation_of_each_family():
    k = srm_kernels()
    # largest absolute coefficient: 1 (1st order), 2/2, 3/3, 4/4, 12/12, 4/4, 12/12
    peaks = np.abs(k).max(axis=(1, 2))
    np.testing.assert_allclose(peaks, 1.0)


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
