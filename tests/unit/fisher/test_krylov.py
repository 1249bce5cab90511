"""The Fisher solver's dense helpers: block Krylov on a known spectrum, the sign convention."""

from __future__ import annotations

import torch

from tlscopes.fisher.krylov import _block_krylov, _fix_signs, _orthonormal_complement


def test_block_krylov_finds_the_top_eigenpairs_of_a_known_operator():
    generator = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(40, 40, generator=generator, dtype=torch.float64))
    values = torch.cat([torch.tensor([5.0, 3.0, 2.9]), torch.linspace(1, 0.01, 37)]).double()
    A = Q @ torch.diag(values) @ Q.T
    start, _ = torch.linalg.qr(torch.randn(40, 4, generator=generator, dtype=torch.float64))
    ritz_values, ritz_vectors, residuals = _block_krylov(lambda U: A @ U, start, 2, 4, 1e-10)
    torch.testing.assert_close(ritz_values[:2], values[:2], rtol=1e-9, atol=0)
    for k in range(2):
        assert abs(float(ritz_vectors[:, k] @ Q[:, k])) > 1 - 1e-9
    assert float(residuals[:2].max()) <= 1e-10 * 5.0


def test_signs_and_complements():
    vectors = torch.tensor([[0.1, -0.9], [-0.8, 0.2]], dtype=torch.float64)
    fixed = _fix_signs(vectors)
    assert fixed[1, 0] > 0 and fixed[0, 1] > 0  # the largest entry of each column is positive
    basis = torch.eye(4, dtype=torch.float64)[:, :2]
    extra = _orthonormal_complement(torch.randn(4, 2, dtype=torch.float64), basis)
    torch.testing.assert_close(basis.T @ extra, torch.zeros(2, extra.shape[1], dtype=torch.float64))
