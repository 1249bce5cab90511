"""The matrix-free Fisher eigensolver against the formed-matrix reference (paper eq. 5)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tlscopes.fisher import directions as fisher
from tlscopes.fisher import solver as fisher_solver
from tlscopes.fisher import streaming as fisher_streaming
from tlscopes.fisher.directions import fisher_directions, fisher_directions_exact, fisher_matrix
from tlscopes.fisher.solver import _normalised
from tlscopes.fisher.streaming import tail_pass

# Temperatures of random logits (scale 5): peaked, medium and flat next-token distributions.
PEAKED, MEDIUM, FLAT = 0.15, 1.0, 50.0


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # These matrices are tiny: threads only add OpenMP barriers, which stall for a whole
    # scheduler slice when other processes load the machine (the tests then took minutes).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build_unembedding(
    d_model: int = 48, d_vocab: int = 3000, seed: int = 0, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    # Columns with unequal scales and a shared offset, like a trained unembedding.
    W_U = torch.randn(d_model, d_vocab, generator=generator, dtype=dtype)
    W_U = W_U * (0.5 + torch.rand(d_model, 1, generator=generator, dtype=dtype))
    return W_U + 0.3 * torch.randn(d_model, 1, generator=generator, dtype=dtype)


def build_probs(
    d_vocab: int = 3000, temperature: float = MEDIUM, seed: int = 1, dtype=torch.float64
) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = 5 * torch.randn(d_vocab, generator=generator, dtype=dtype)
    return torch.softmax(logits / temperature, dim=0)


def exact_spectrum(W_U: torch.Tensor, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All eigenpairs of F in float64, descending."""
    values, vectors = torch.linalg.eigh(fisher_matrix(W_U.double(), probs.double()))
    return values.flip(0), vectors.flip(1)


def assert_matches_exact(
    W_U: torch.Tensor, probs: torch.Tensor, rank: int, tolerance: float = 1e-8
) -> None:
    """Eigenvalues to `tolerance` relative to lambda_1, residuals to the same, and each vector
    equal to the exact one where its eigenvalue is separated by more than 1e-3 * lambda_1;
    inside a near-degenerate cluster only its Rayleigh quotient and residual are defined."""
    values, vectors = fisher_directions(W_U, probs, rank)
    exact_values, exact_vectors = exact_spectrum(W_U, probs)
    F = fisher_matrix(W_U.double(), probs.double())
    top = float(exact_values[0])
    vectors = vectors.double()
    assert values.shape == (rank,) and vectors.shape == (W_U.shape[0], rank)
    assert torch.allclose(vectors.T @ vectors, torch.eye(rank, dtype=torch.float64), atol=1e-6)
    assert (values.double() - exact_values[:rank]).abs().max() <= tolerance * top
    residuals = (F @ vectors - vectors * values.double()).norm(dim=0)
    assert residuals.max() <= 10 * tolerance * top
    rayleigh = (vectors * (F @ vectors)).sum(0)
    assert (rayleigh - exact_values[:rank]).abs().max() <= tolerance * top
    for j in range(rank):
        neighbours = torch.cat([exact_values[:j], exact_values[j + 1 :]])
        gap = float((neighbours - exact_values[j]).abs().min())
        if gap > 1e-3 * top:
            cosine = float((vectors[:, j] @ exact_vectors[:, j]).abs())
            # Davis-Kahan: sin(angle) <= residual / gap.
            assert math.sqrt(max(0.0, 1 - cosine**2)) <= 10 * tolerance * top / gap + 1e-7


@pytest.mark.parametrize("temperature", [PEAKED, MEDIUM, FLAT], ids=["peaked", "medium", "flat"])
@pytest.mark.parametrize("rank", [1, 4])
def test_fast_matches_exact(temperature: float, rank: int) -> None:
    W_U = build_unembedding()
    assert_matches_exact(W_U, build_probs(temperature=temperature), rank)


@pytest.mark.parametrize("temperature", [PEAKED, MEDIUM, FLAT], ids=["peaked", "medium", "flat"])
def test_float32_matches_float64_truth(temperature: float) -> None:
    W_U = build_unembedding(d_model=64, d_vocab=5000, dtype=torch.float32)
    probs = build_probs(5000, temperature, dtype=torch.float32)
    values, vectors = fisher_directions(W_U, probs, 2)
    assert values.dtype == vectors.dtype == torch.float32
    exact_values, exact_vectors = exact_spectrum(W_U, probs)
    assert (values.double() - exact_values[:2]).abs().max() <= 1e-4 * exact_values[0]
    assert (vectors.double().T @ exact_vectors[:, :2]).diagonal().abs().min() >= 0.999


@pytest.fixture
def small_head(monkeypatch):
    """Head sizes scaled down so that 3,000-token vocabularies get a tail and a deep tail."""
    monkeypatch.setattr(fisher_solver, "_MIN_HEAD", 256)
    monkeypatch.setattr(fisher_solver, "_HEAD_FRACTION", 64)
    monkeypatch.setattr(fisher_solver, "_GRAM_HEAD", 64)
    monkeypatch.setattr(fisher_streaming, "_NORM_CACHE", {})


def record_passes(monkeypatch) -> list[torch.Tensor]:
    """Patches the streaming pass to record which columns each pass reads."""
    seen, original = [], tail_pass

    def recording(W, columns, p, U, centre=None):
        seen.append(columns.clone())
        return original(W, columns, p, U, centre)

    monkeypatch.setattr(fisher_solver, "tail_pass", recording)
    return seen


def zipf_probs(d_vocab: int, exponent: float, seed: int, dtype=torch.float64) -> torch.Tensor:
    """A shuffled power law with log-normal noise: a peaked head and a long, thin tail."""
    generator = torch.Generator().manual_seed(seed)
    ranks = torch.arange(1, d_vocab + 1, dtype=torch.float64)
    logits = -exponent * ranks.log() + 0.5 * torch.randn(d_vocab, generator=generator).double()
    probs = torch.softmax(logits, 0)[torch.randperm(d_vocab, generator=generator)]
    return probs.to(dtype)


def blind_spot(
    dtype: torch.dtype,
    tail: int = 20000,
    head_values: tuple[float, ...] = (1.0, 0.8, 0.6, 0.4, 0.3),
    tail_value: float = 2.0,
):
    """W_U and p whose largest-p tokens are all orthogonal to one of F's top eigenvectors.

    120 head tokens carry 80% of the mass on axes 1-5, in +- pairs so that w_bar = 0, giving
    F the eigenvalues `head_values` there; the tail, 20% of the mass spread thinly over many
    tokens, lies on axis 0 and gives F the eigenvalue `tail_value` there. The head's
    eigenvectors are then exact eigenvectors of F with zero residual, so a search that only
    refines them never sees axis 0.
    """
    d_model, per_sign, head = 16, 12, 120
    W_U = torch.zeros(d_model, head + tail, dtype=torch.float64)
    probs = torch.cat([torch.full((head,), 0.8 / head), torch.full((tail,), 0.2 / tail)]).double()
    signs = torch.tensor([1.0, -1.0], dtype=torch.float64)
    for axis, value in enumerate(head_values, start=1):
        columns = slice((axis - 1) * 2 * per_sign, axis * 2 * per_sign)
        scale = math.sqrt(value * head / (0.8 * 2 * per_sign))
        W_U[axis, columns] = signs.repeat(per_sign) * scale
    W_U[0, head:] = signs.repeat(tail // 2) * math.sqrt(tail_value / 0.2)
    return W_U.to(dtype), probs.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_top_eigenvector_the_head_cannot_see_is_found(dtype: torch.dtype) -> None:
    # Regression: the warm start used to converge at step 0 on the head's own eigenvectors
    # and return lambda_1 = 1 (the head's) instead of 2. (A tail this heavy is now solved by
    # forming F; the next test keeps the tail light enough for the matrix-free search.)
    W_U, probs = blind_spot(dtype)
    exact_values, exact_vectors = exact_spectrum(W_U, probs)
    assert abs(float(exact_values[0]) - 2) <= 1e-6 and abs(float(exact_values[1]) - 1) <= 1e-6
    values, vectors = fisher_directions(W_U, probs, 1)
    assert abs(float(values[0]) - float(exact_values[0])) <= 2 * fisher._tolerance(dtype)
    assert float((vectors[:, 0].double() @ exact_vectors[:, 0]).abs()) >= 1 - 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_second_eigenvector_the_head_cannot_see_is_found(dtype) -> None:
    # A light tail (trace 0.09 < 0.1 lambda_1, so no fallback to forming F) hides
    # lambda_2 = 0.09 from the head, whose own second eigenvalue is 0.08.
    W_U, probs = blind_spot(dtype, head_values=(1, 0.08, 0.06, 0.04, 0.03), tail_value=0.09)
    exact_values, _ = exact_spectrum(W_U, probs)
    assert abs(float(exact_values[1]) - 0.09) <= 1e-6
    values, _ = fisher_directions(W_U, probs, 2)
    assert (values.double() - exact_values[:2]).abs().max() <= 2 * fisher._tolerance(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_top_eigenvector_off_a_whole_head_is_found(dtype: torch.dtype) -> None:
    # The same blind spot without a tail: every token is in the head, and the guard vectors
    # must be expanded for the search to leave the head's exact eigenvectors.
    W_U, probs = blind_spot(dtype, tail=1000)
    exact_values, _ = exact_spectrum(W_U, probs)
    values, _ = fisher_directions(W_U, probs, 1)
    assert abs(float(values[0]) - float(exact_values[0])) <= 2 * fisher._tolerance(dtype)


def assert_guarantee(W_U: torch.Tensor, probs: torch.Tensor, rank: int) -> None:
    """The docstring's guarantee against F formed in float64 from the same inputs: each
    eigenvalue within tol * lambda_1 of the exact one of the same index, and each residual
    ||F u - lambda u|| within tol * lambda_1 (tol of W_U's dtype, plus the rounding of the
    returned float32 values and vectors)."""
    values, vectors = fisher_directions(W_U, probs, rank)
    exact_values, _ = exact_spectrum(W_U, probs)
    F = fisher_matrix(W_U.double(), probs.double())
    top = float(exact_values[0])
    slack = 0.0 if W_U.dtype == torch.float64 else 1e-6
    allowed = (fisher._tolerance(W_U.dtype) + slack) * top
    assert (values.double() - exact_values[:rank]).abs().max() <= allowed
    vectors = vectors.double() / vectors.double().norm(dim=0)
    residuals = (F @ vectors - vectors * values.double()).norm(dim=0)
    assert residuals.max() <= allowed


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("exponent", [0.8, 1.2, 2.0])
@pytest.mark.parametrize("rank", [1, 3])
def test_guarantee_on_random_inputs_with_a_tail(small_head, dtype, exponent, rank) -> None:
    W_U = build_unembedding(d_model=32, d_vocab=3000, seed=rank, dtype=dtype)
    probs = zipf_probs(3000, exponent, seed=int(10 * exponent), dtype=dtype)
    assert_guarantee(W_U, probs, rank)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_guarantee_on_the_blind_spot_with_a_small_head(small_head, dtype) -> None:
    W_U, probs = blind_spot(dtype, tail=4000)
    assert_guarantee(W_U, probs, 2)


def test_a_light_tail_takes_one_pass_and_the_deep_tail_is_never_read(
    small_head, monkeypatch
) -> None:
    W_U = build_unembedding(d_model=32, d_vocab=3000, dtype=torch.float32)
    probs = build_probs(3000, temperature=0.7, seed=3, dtype=torch.float32)
    passes = record_passes(monkeypatch)
    assert_guarantee(W_U, probs, 1)
    assert len(passes) == 1
    read = torch.zeros(3000, dtype=torch.bool)
    read[passes[0]] = True
    read[torch.topk(probs, fisher_solver._MIN_HEAD).indices] = True
    assert int((~read).sum()) > 500, "the thin end of the tail should be bounded, not read"


def test_unseen_trace_bounds_what_the_search_does_not_know(small_head) -> None:
    # ||F - F~|| <= t' + deep bound, the inequality both certificate tests rest on.
    W_U, probs = build_unembedding(d_model=24), build_probs(temperature=0.7, seed=5)
    probs, total = _normalised(probs, W_U.dtype)
    problem, _ = fisher_solver._split(W_U, probs, total, 1, 5, 1e-5, fisher_solver._MIN_HEAD)
    assert problem is not None and problem.tail.numel() > 0 and problem.deep_bound > 0
    F = fisher_matrix(W_U, probs)
    identity = torch.eye(24, dtype=torch.float64)
    difference = F - problem.apply(identity)
    assert torch.allclose(difference, difference.T, atol=1e-12)
    eigenvalues = torch.linalg.eigvalsh(difference)
    assert float(eigenvalues.abs().max()) <= problem.unseen_trace() + problem.deep_bound
    assert float(eigenvalues.max()) > 0  # the bound is not vacuous: F~ does miss something


def test_column_norms_follow_in_place_changes(small_head) -> None:
    W_U = build_unembedding(d_model=32, d_vocab=3000, dtype=torch.float32)
    probs = zipf_probs(3000, 1.2, seed=7, dtype=torch.float32)
    assert_guarantee(W_U, probs, 1)
    smallest = torch.argsort(probs)[:1000]
    W_U[:, smallest] *= 50  # the deep tail's columns, whose norms alone bound their share
    assert_guarantee(W_U, probs, 1)


@pytest.mark.parametrize("columns", [8192, 7], ids=["one block", "blocks of 7 columns"])
def test_fallback_to_the_formed_matrix_is_exact(monkeypatch, columns) -> None:
    # The formed matrix is summed a block of columns at a time (no copy of W_U); any block size
    # gives the reference's answer.
    monkeypatch.setattr(fisher_solver, "_block_krylov", lambda *args: None)
    monkeypatch.setattr(fisher_solver, "_FALLBACK_COLUMNS", columns)
    assert_matches_exact(build_unembedding(), build_probs(temperature=FLAT), 3)


def test_an_unembedding_that_requires_grad_records_no_graph() -> None:
    W_U = build_unembedding().requires_grad_(True)
    for temperature in (PEAKED, FLAT):
        values, vectors = fisher_directions(W_U, build_probs(temperature=temperature), 2)
        assert not values.requires_grad and not vectors.requires_grad
        assert values.grad_fn is None and vectors.grad_fn is None


def test_rank_up_to_d_model() -> None:
    W_U = build_unembedding(d_model=12, d_vocab=400)
    assert_matches_exact(W_U, build_probs(400, temperature=MEDIUM), 12)


@pytest.mark.parametrize("layout", ["scattered", "contiguous", "few"])
def test_exact_zeros_in_probs(layout: str) -> None:
    W_U = build_unembedding()
    probs = build_probs()
    keep = torch.zeros_like(probs, dtype=torch.bool)
    if layout == "scattered":
        keep[::3] = True
    elif layout == "contiguous":
        keep[500:2200] = True
    else:
        keep[[7, 1000, 2999]] = True
    probs = torch.where(keep, probs, torch.zeros_like(probs))
    probs = probs / probs.sum()
    assert_matches_exact(W_U, probs, 2)
    # The zero-probability columns must not matter at all, even if they are garbage.
    garbage = W_U.clone()
    garbage[:, ~keep] = 1e6
    values, _ = fisher_directions(garbage, probs, 2)
    assert torch.allclose(values, fisher_directions(W_U, probs, 2)[0], rtol=1e-10)


def test_point_mass_has_zero_fisher_information() -> None:
    probs = torch.zeros(3000, dtype=torch.float64)
    probs[42] = 1.0
    values, vectors = fisher_directions(build_unembedding(), probs, 3)
    assert torch.all(values.abs() <= 1e-12)
    assert torch.allclose(vectors.T @ vectors, torch.eye(3, dtype=torch.float64), atol=1e-10)


def test_flat_probs_rayleigh_quotient_is_near_the_top_eigenvalue() -> None:
    # A uniform p over many random columns: Marchenko-Pastur edge, a nearly degenerate top.
    generator = torch.Generator().manual_seed(3)
    W_U = 0.02 * torch.randn(96, 8000, generator=generator)
    probs = torch.full((8000,), 1 / 8000)
    _, vectors = fisher_directions(W_U, probs, 1)
    exact_values, _ = exact_spectrum(W_U, probs)
    F = fisher_matrix(W_U.double(), probs.double())
    rayleigh = float(vectors[:, 0].double() @ F @ vectors[:, 0].double())
    assert abs(rayleigh - float(exact_values[0])) <= 1e-3 * float(exact_values[0])


def test_transposed_storage_gives_the_same_answer() -> None:
    W_U, probs = build_unembedding(), build_probs()
    lm_head_layout = W_U.T.contiguous().T  # [d_vocab, d_model] storage, as a Linear weight
    expected = fisher_directions(W_U, probs, 2)
    actual = fisher_directions(lm_head_layout, probs, 2)
    assert torch.allclose(actual[0], expected[0], rtol=1e-10)
    assert torch.allclose(actual[1], expected[1], atol=1e-8)


def test_sign_convention_and_matches_reference_signs() -> None:
    W_U, probs = build_unembedding(), build_probs()
    _, vectors = fisher_directions(W_U, probs, 3)
    largest = vectors.gather(0, vectors.abs().argmax(dim=0, keepdim=True))
    assert torch.all(largest > 0)
    _, reference = fisher_directions_exact(W_U, probs, 3)
    assert torch.allclose(vectors, reference, atol=1e-6)


def test_global_random_state_is_untouched() -> None:
    state = torch.random.get_rng_state()
    fisher_directions(build_unembedding(), build_probs(temperature=FLAT), 2)
    assert torch.equal(state, torch.random.get_rng_state())


def test_fisher_matrix_is_positive_semidefinite_for_slightly_unnormalised_probs() -> None:
    # Taken literally, W (diag p - p p^T) W^T with sum(p) = 1 + 1e-4 has the eigenvalue
    # -1e-4 ||W p||^2; renormalising first keeps F a covariance.
    W_U = build_unembedding()
    probs = torch.zeros(3000, dtype=torch.float64)
    probs[:2] = torch.tensor([1 - 1e-9, 1e-9]) * (1 + 1e-4)
    eigenvalues = torch.linalg.eigvalsh(fisher_matrix(W_U, probs))
    scale = float((W_U.square().sum(0) * probs).sum())
    assert eigenvalues.min() >= -1e-14 * scale
    values, _ = fisher_directions(W_U, probs, 1)
    assert values[0] >= 0


@pytest.mark.parametrize(
    ("W_U", "probs", "rank", "error", "message"),
    [
        (torch.zeros(4, 10, 2), torch.full((10,), 0.1), 1, ValueError, "W_U must be"),
        (torch.zeros(4, 10), torch.full((9,), 1 / 9), 1, ValueError, "probs must be \\[d_vocab\\]"),
        (
            torch.zeros(4, 10),
            torch.full((1, 10), 0.1),
            1,
            ValueError,
            "probs must be \\[d_vocab\\]",
        ),
        (torch.zeros(4, 10), torch.full((10,), 0.1), 0, ValueError, "rank must be"),
        (torch.zeros(4, 10), torch.full((10,), 0.1), 5, ValueError, "rank must be"),
        (torch.zeros(4, 10), torch.full((10,), 0.1), 1.5, ValueError, "rank must be"),
        (torch.zeros(4, 10), torch.full((10,), 0.1), True, ValueError, "rank must be"),
        (torch.zeros(4, 10, dtype=torch.int64), torch.full((10,), 0.1), 1, TypeError, "float"),
        (torch.zeros(4, 10), torch.randn(10), 1, ValueError, "negative"),
        (torch.zeros(4, 10), torch.full((10,), 1.0), 1, ValueError, "sum to 1"),
        (torch.zeros(4, 10), torch.full((10,), math.nan), 1, ValueError, "NaN or infinite"),
        (
            torch.zeros(4, 10),
            torch.tensor([math.inf] + [0.0] * 9),
            1,
            ValueError,
            "NaN or infinite",
        ),
    ],
    ids=[
        "W_U-3d",
        "probs-length",
        "probs-2d",
        "rank-0",
        "rank-too-big",
        "rank-float",
        "rank-bool",
        "W_U-int",
        "negative-probs",
        "unnormalised-probs",
        "nan-probs",
        "inf-probs",
    ],
)
def test_bad_inputs_raise_with_a_useful_message(W_U, probs, rank, error, message) -> None:
    for function in (fisher_directions, fisher_directions_exact):
        with pytest.raises(error, match=message):
            function(W_U, probs, rank)


def test_non_finite_unembedding_where_probs_are_positive_raises() -> None:
    W_U, probs = build_unembedding(), build_probs()
    W_U[3, 17] = math.nan
    with pytest.raises(ValueError, match="W_U has NaN or infinite entries"):
        fisher_directions(W_U, probs)


@settings(max_examples=40, deadline=None)
@given(
    d_model=st.integers(2, 24),
    d_vocab=st.integers(2, 400),
    log_temperature=st.floats(-2.5, 3.0),
    rank=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_property_fast_matches_exact(d_model, d_vocab, log_temperature, rank, seed) -> None:
    rank = min(rank, d_model)
    W_U = build_unembedding(d_model, d_vocab, seed)
    probs = build_probs(d_vocab, math.exp(log_temperature), seed + 1)
    values, vectors = fisher_directions(W_U, probs, rank)
    exact_values, _ = exact_spectrum(W_U, probs)
    F = fisher_matrix(W_U, probs)
    # Forming F in float64 resolves eigenvalues only down to ~eps * trace(W diag(p) W^T).
    second_moment = float((W_U.square().sum(0) * probs).sum())
    floor = 1e-13 * second_moment
    top = float(exact_values[0])
    assert (values - exact_values[:rank]).abs().max() <= 1e-8 * top + floor
    assert (F @ vectors - vectors * values).norm(dim=0).max() <= 1e-6 * top + floor
