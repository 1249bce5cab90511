"""The matrix-free Fisher eigensolver against the formed-matrix reference (paper eq. 5)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tlscopes import fisher
from tlscopes.fisher import fisher_directions, fisher_directions_exact, fisher_matrix

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


def test_large_vocabulary_uses_the_krylov_path_and_matches(monkeypatch) -> None:
    steps = []
    original = fisher._block_krylov
    monkeypatch.setattr(fisher, "_block_krylov", lambda *args: steps.append(1) or original(*args))
    assert_matches_exact(build_unembedding(), build_probs(temperature=MEDIUM), 1)
    assert steps, "a heavy tail must not be certified by the head alone"


def test_peaked_probs_are_certified_by_the_head_alone(monkeypatch) -> None:
    def no_krylov(*args):
        raise AssertionError("the tail bound should have certified the head")

    monkeypatch.setattr(fisher, "_block_krylov", no_krylov)
    probs = build_probs(temperature=0.05)
    assert_matches_exact(build_unembedding(), probs, 2)


def test_a_light_tail_the_head_cannot_certify_goes_to_krylov_without_column_norms(
    monkeypatch,
) -> None:
    # 99.5% of the mass on two tokens, the rest spread thinly over all: a tail far too heavy
    # for the certificate at float64's tolerance, so its column norms are not worth taking.
    probs = torch.full((3000,), 0.005 / 2998, dtype=torch.float64)
    probs[:2] = torch.tensor([0.7, 0.295], dtype=torch.float64)
    norms_taken, steps = [], []
    original_pass, original_krylov = fisher._second_moment_times, fisher._block_krylov

    def recording_pass(*args, column_norms=False):
        norms_taken.append(column_norms)
        return original_pass(*args, column_norms=column_norms)

    monkeypatch.setattr(fisher, "_second_moment_times", recording_pass)
    monkeypatch.setattr(fisher, "_block_krylov", lambda *a: steps.append(1) or original_krylov(*a))
    assert_matches_exact(build_unembedding(), probs, 2)
    assert steps and not any(norms_taken)


def test_fallback_to_the_formed_matrix_is_exact(monkeypatch) -> None:
    monkeypatch.setattr(fisher, "_block_krylov", lambda *args: None)
    assert_matches_exact(build_unembedding(), build_probs(temperature=FLAT), 3)


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


@pytest.mark.parametrize("temperature", [0.3, MEDIUM, FLAT])
@pytest.mark.parametrize("head_size", [1, 10, 200])
def test_tail_trace_bounds_the_head_error(temperature: float, head_size: int) -> None:
    W_U, probs = build_unembedding(), build_probs(temperature=temperature)
    order = torch.argsort(probs, descending=True)
    rest = order[fisher._MAX_HEAD_SIZE :]
    rest_sum = W_U[:, rest] @ probs[rest]
    problem = fisher._Problem(W_U, probs, 1.0, probs, order, W_U @ probs, rest_sum)
    head = order[:head_size]
    head_values, head_vectors = fisher._head_eigenpairs(W_U, probs, problem.w_bar, head, 4)
    bound = fisher._tail_trace(problem, W_U.square().sum(0), head_size)

    in_tail = torch.ones_like(probs, dtype=torch.bool)
    in_tail[head] = False
    centred = (W_U - problem.w_bar[:, None])[:, in_tail]
    tail_matrix = (centred * probs[in_tail]) @ centred.T
    assert bound >= float(torch.linalg.matrix_norm(tail_matrix, ord=2))
    assert bound >= float(torch.trace(tail_matrix)) * (1 - 1e-12)
    # Weyl and the residual bound the certificate relies on.
    F = fisher_matrix(W_U, probs)
    exact_values = torch.linalg.eigvalsh(F).flip(0)[:4]
    assert torch.all(head_values <= exact_values + 1e-12)
    assert torch.all(exact_values <= head_values + bound + 1e-12)
    residuals = (F @ head_vectors - head_vectors * head_values).norm(dim=0)
    assert torch.all(residuals <= bound + 1e-12)


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
