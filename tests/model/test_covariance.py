import torch

from exifkit.model.covariance import covariance, covariance_pool, newton_schulz_sqrt, upper_triangle


def test_covariance_is_the_biased_channel_covariance():
    x = torch.randn(3, 5, 4, 4, dtype=torch.float64)
    flat = x.reshape(3, 5, 16)
    expected = torch.stack([torch.cov(f, correction=0) for f in flat])
    torch.testing.assert_close(covariance(x), expected)


def _spd(n, c, seed=0):
    torch.manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, c, c, dtype=torch.float64))
    eig = torch.rand(n, c, dtype=torch.float64) * 0.5 + 0.5  # condition number <= 2
    return q @ torch.diag_embed(eig) @ q.transpose(1, 2), q @ torch.diag_embed(eig.sqrt()) @ q.transpose(1, 2)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_newton_schulz_matches_eigendecomposition_on_well_conditioned_matrices():
    a, root = _spd(4, 4)
    assert _rel(newton_schulz_sqrt(a, iterations=5), root) < 1e-4
    a, root = _spd(4, 32)
    assert _rel(newton_schulz_sqrt(a, iterations=10), root) < 1e-12


def test_five_iterations_on_32_channels_are_an_approximation():
    # After dividing by the trace the eigenvalues are about 1/32, far from 1, so the paper's 5
    # iterations stop short of the true root; the network is trained with (and for) this operator.
    a, root = _spd(4, 32)
    assert 0.01 < _rel(newton_schulz_sqrt(a, iterations=5), root) < 0.2


def test_upper_triangle_is_row_major_with_diagonal():
    a = torch.arange(9.0).reshape(1, 3, 3)
    assert upper_triangle(a).tolist() == [[0.0, 1.0, 2.0, 4.0, 5.0, 8.0]]
    assert covariance_pool(torch.randn(2, 32, 8, 8)).shape == (2, 528)
