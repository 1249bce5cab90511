"""Analyses, the attribution matrix, time series and figure helpers, on tiny seeded models."""

from __future__ import annotations

import importlib.util
import math
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

import tlscopes as ts
from analyses import attention_sinks, fisher_spectrum, ig_path
from tests import helpers
from tests.models import VARIANTS
from tlscopes import timeseries
from tlscopes.matrix import attribution_matrix
from tlscopes.plotting import draw_tokens, token_lines, token_rows_page, tokens_page

TEXT = "the person grew up in the south and studied at columbia . the person is"
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model(request):
    return VARIANTS[request.param]()


@pytest.fixture(scope="module")
def bridge():
    return helpers.build_bridge()


def attached_hooks(model):
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


# Attention sinks -------------------------------------------------------------------------------


def test_attention_per_query_sums_to_one_and_is_causal(model):
    tokens = model.to_tokens(TEXT)
    patterns = attention_sinks.attention_patterns(model, tokens)
    n = tokens.shape[1]
    assert patterns.shape == (model.cfg.n_layers, model.cfg.n_heads, n, n)
    torch.testing.assert_close(
        patterns.sum(-1), torch.ones(patterns.shape[:-1], dtype=patterns.dtype)
    )
    assert bool((patterns.triu(diagonal=1) == 0).all())
    assert attached_hooks(model) == 0


def test_scaling_the_embeddings_changes_the_patterns(model):
    tokens = model.to_tokens(TEXT)
    plain = attention_sinks.attention_patterns(model, tokens)
    torch.testing.assert_close(attention_sinks.attention_patterns(model, tokens, 1.0), plain)
    assert not torch.allclose(attention_sinks.attention_patterns(model, tokens, 0.01), plain)


def test_sink_mass_frame(model):
    frame = attention_sinks.sink_mass(model, TEXT)
    n = model.to_tokens(TEXT).shape[1]
    assert len(frame) == model.cfg.n_layers * model.cfg.n_heads * n
    # Hugging Face Llama takes the attention softmax in float32 even for a float64 model.
    assert frame["total"].sub(1).abs().max() < 1e-6
    assert (frame[frame["query"] == 0]["first"] - 1).abs().max() < 1e-6
    # BOS is the first token here, so mass on BOS is mass on position 0.
    assert attention_sinks.bos_positions(model, model.to_tokens(TEXT)) == [0]
    assert (frame["bos"] - frame["first"]).abs().max() < 1e-12
    table = attention_sinks.layer_head_sink(frame)
    assert table.shape == (model.cfg.n_layers, model.cfg.n_heads)
    assert bool(((table >= 0) & (table <= 1)).all().all())


def test_early_share():
    scores = torch.tensor([3.0, 1.0, 1.0, 5.0, 0.0])
    assert attention_sinks.early_share(scores, position=3, n_early=1) == pytest.approx(0.3)
    assert attention_sinks.early_share(scores, position=2, n_early=2) == pytest.approx(0.8)


def test_method_early_shares(bridge):
    methods = ("semantic", "fisher", "integrated_gradients")
    shares, results = attention_sinks.method_early_shares(
        bridge, TEXT, target=" columbia", methods=methods, n_steps=4
    )
    assert list(shares["method"]) == list(methods) and set(results) == set(methods)
    assert bool((shares["share_first"] <= shares["share_first_3"] + 1e-12).all())
    assert bool(((shares["share_first_3"] > 0) & (shares["share_first_3"] <= 1)).all())
    semantic = results["semantic"].scores[0]
    assert shares["share_first"][0] == pytest.approx(float(semantic[0] / semantic.sum()))


def test_sink_path_and_figure(bridge):
    integrand = ig_path.path_integrand(bridge, TEXT, alphas=(0.05, 0.5, 1.0))
    path = attention_sinks.sink_path(bridge, integrand, n_early=2)
    assert path.layer_sink.shape == (3, bridge.cfg.n_layers)
    assert bool(((path.layer_sink >= 0) & (path.layer_sink <= 1)).all())
    torch.testing.assert_close(path.integrand_share, integrand.early_share(2))
    patterns = attention_sinks.attention_patterns(bridge, integrand.token_ids, 0.5)
    torch.testing.assert_close(path.layer_sink[1], patterns[:, :, 1:, 0].double().mean(dim=(1, 2)))
    assert list(path.to_pandas().columns)[:2] == ["alpha", "sink_mass_mean"]
    frame = attention_sinks.sink_mass(bridge, TEXT)
    shares, _ = attention_sinks.method_early_shares(
        bridge, TEXT, methods=("semantic", "temperature"), n_early=2
    )
    assert isinstance(attention_sinks.plot_attention_sinks(frame, path, shares), Figure)


# IG path integrand -----------------------------------------------------------------------------


def test_integrand_at_alpha_one_is_the_semantic_scope_gradient(model):
    integrand = ig_path.path_integrand(model, TEXT, target=" columbia", alphas=(0.3, 1.0))
    semantic = ts.attribute(model, TEXT, ts.SemanticScope(" columbia"))
    torch.testing.assert_close(integrand.norms[1], semantic.scores[0], rtol=1e-9, atol=1e-12)
    assert not torch.allclose(integrand.norms[0], semantic.scores[0])
    assert integrand.target.strip() == "columbia"


def test_integrand_batched_equals_one_alpha_at_a_time(bridge):
    alphas = (0.01, 0.2, 0.7, 1.0)
    batched = ig_path.path_integrand(bridge, TEXT, alphas=alphas, position=-3)
    single = ig_path.path_integrand(bridge, TEXT, alphas=alphas, position=-3, batch_size=1)
    torch.testing.assert_close(batched.norms, single.norms, rtol=1e-9, atol=1e-12)
    assert batched.norms.shape == (4, len(batched.tokens))
    assert bool((batched.norms[:, batched.position + 1 :] == 0).all())
    # With no target, the top prediction of the real input is explained at every alpha.
    top = ts.attribute(bridge, TEXT, ts.TemperatureScope(), position=-3).top_token_ids[0, 0]
    assert batched.target_id == int(top)


def test_integrand_equals_the_gradient_at_the_scaled_input(bridge):
    """The integrand at alpha is d z / d x~ evaluated at x~ = alpha x (not d z(alpha x) / d x)."""
    alpha = 0.25
    integrand = ig_path.path_integrand(bridge, TEXT, target=" south", alphas=(alpha,))
    tokens = bridge.to_tokens(TEXT)
    target = ts.scopes.resolve_token(bridge, " south")
    saved = []
    with torch.no_grad(), bridge.hooks(fwd_hooks=[("hook_embed", lambda t, hook: saved.append(t))]):
        bridge(tokens)
    leaf = (saved[0].detach() * alpha).requires_grad_(True)
    with bridge.hooks(fwd_hooks=[("hook_embed", lambda t, hook: leaf)]):
        logits = bridge(tokens)
    (grad,) = torch.autograd.grad(logits[0, -1, target], leaf)
    torch.testing.assert_close(integrand.norms[0], grad[0].norm(dim=-1), rtol=1e-7, atol=1e-10)


def test_integrand_summaries():
    norms = torch.tensor(
        [[1.0, 1.0, 1.0, 1.0, 9.0], [4.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0, 0.0]]
    )
    integrand = ig_path.PathIntegrand(
        torch.tensor([0.1, 0.5, 1.0]), norms, ["a"] * 5, torch.arange(5), 3, 0, "a"
    )
    # Position 3 is explained; the 9 after it is ignored.
    torch.testing.assert_close(
        integrand.centre_of_mass(), torch.tensor([0.5, 0.0, 1.0], dtype=torch.float64)
    )
    torch.testing.assert_close(
        integrand.early_share(2), torch.tensor([0.5, 1.0, 0.0], dtype=torch.float64)
    )


def test_integrand_refuses_bad_alphas(bridge):
    for alphas in ((), (0.0, 1.0), (1.5,)):
        with pytest.raises(ValueError, match="alphas"):
            ig_path.path_integrand(bridge, TEXT, alphas=alphas)


def test_integrand_figure(bridge):
    integrand = ig_path.path_integrand(bridge, TEXT, alphas=(0.1, 1.0))
    assert isinstance(ig_path.plot_path_integrand(integrand), Figure)


# Fisher spectrum -------------------------------------------------------------------------------


PASSAGES = [
    "the cat sat on the mat and the dog sat on the mat",
    "one two three four five six seven eight nine",
    "the capital of france is paris and the capital of italy is rome",
]


def test_spectrum_matches_the_explicit_matrix_and_its_trace(bridge):
    spectra = fisher_spectrum.fisher_spectra(bridge, PASSAGES, progress=False)
    d_model = bridge.cfg.d_model
    assert spectra.eigenvalues.shape == (3, d_model)
    for index, text in enumerate(PASSAGES):
        probs = fisher_spectrum.passage_probabilities(bridge, text)
        matrix = ts.fisher_matrix(bridge.W_U.detach().double(), probs)
        expected = torch.linalg.eigvalsh(matrix).flip(0)
        torch.testing.assert_close(
            spectra.eigenvalues[index], expected.clamp_min(0), atol=1e-12, rtol=1e-9
        )
        torch.testing.assert_close(
            spectra.traces[index], torch.trace(matrix), rtol=1e-9, atol=1e-12
        )
        top, _ = ts.fisher_directions(bridge.W_U.detach().double(), probs, rank=2)
        torch.testing.assert_close(spectra.eigenvalues[index, :2], top, rtol=1e-8, atol=1e-12)


def test_explained_variance_is_monotone_and_reaches_one(bridge):
    explained = fisher_spectrum.fisher_spectra(
        bridge, PASSAGES, progress=False
    ).explained_variance()
    assert explained.shape == (3, bridge.cfg.d_model)
    assert bool((explained.diff(dim=1) >= 0).all())
    assert bool((explained > 0).all())
    torch.testing.assert_close(
        explained[:, -1], torch.ones(3, dtype=explained.dtype), rtol=1e-9, atol=0
    )


def test_rank_scores_equal_fisher_scope_of_that_rank(model):
    tokens = model.to_tokens(PASSAGES[2])
    scores = fisher_spectrum.rank_scores(model, tokens, [1, 2, 5])
    for rank in (2, 5):
        expected = ts.attribute(model, tokens, ts.FisherScope(rank=rank)).scores[0]
        # Eigenvectors of a rank-5 and a rank-2 solve agree to the solver's tolerance only.
        torch.testing.assert_close(scores[rank], expected.double(), rtol=1e-6, atol=1e-12)
    rank_one = ts.attribute(model, tokens, ts.FisherScope())
    lambda_1 = rank_one.details["eigenvalues"][0][0]
    torch.testing.assert_close(
        scores[1], rank_one.scores[0].double() * math.sqrt(lambda_1), rtol=1e-6, atol=1e-12
    )


def test_aopc_by_rank_and_figure(bridge):
    frame = fisher_spectrum.aopc_by_rank(
        bridge, PASSAGES[:2], ranks=(1, 3), baselines=("semantic", "random"), progress=False
    )
    assert len(frame) == 2 * 4
    assert set(frame["method"]) == {"fisher_r1", "fisher_r3", "semantic", "random"}
    assert bool(frame["aopc"].map(math.isfinite).all())
    assert sorted(frame[frame["rank"] > 0]["rank"].unique()) == [1, 3]
    spectra = fisher_spectrum.fisher_spectra(bridge, PASSAGES, progress=False)
    assert isinstance(fisher_spectrum.plot_fisher_spectrum(spectra, frame), Figure)
    assert isinstance(fisher_spectrum.plot_fisher_spectrum(spectra), Figure)


def test_aopc_by_rank_uses_the_evaluation_of_tlscopes_evaluate(bridge):
    """Rank-1 Fisher Scope ranks tokens as FisherScope() does, so its AOPC is the evaluator's."""
    from tlscopes.evaluate import evaluate_passage

    frame = fisher_spectrum.aopc_by_rank(
        bridge, PASSAGES[:1], ranks=(1,), baselines=(), progress=False
    )
    (row,) = evaluate_passage(bridge, PASSAGES[0], ["fisher"])
    assert frame["aopc"][0] == pytest.approx(row["aopc"], rel=1e-9)


# Attribution matrix ----------------------------------------------------------------------------

MATRIX_TEXT = "german : ich bin hier . english : one two three four"
POSITIONS = [5, 7, -1, -3]


@pytest.mark.parametrize(
    "scope",
    [ts.FisherScope(), ts.FisherScope(rank=3), ts.TemperatureScope(), ts.SemanticScope(" four")],
    ids=["fisher", "fisher-rank3", "temperature", "semantic"],
)
def test_matrix_equals_row_by_row_attribution(model, scope):
    matrix = attribution_matrix(model, MATRIX_TEXT, scope, POSITIONS)
    n = model.to_tokens(MATRIX_TEXT).shape[1]
    assert matrix.scores.shape == (4, n)
    assert matrix.positions.tolist() == [5, 7, n - 1, n - 3]
    for row, position in enumerate(POSITIONS):
        single = ts.attribute(model, MATRIX_TEXT, scope, position=position)
        torch.testing.assert_close(matrix.scores[row], single.scores[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(matrix.top_probs[row], single.top_probs[0])
        assert matrix.top_tokens[row] == single.top_tokens[0]
        assert matrix.tokens[row] == single.tokens[0]
    assert attached_hooks(model) == 0


def test_matrix_teacher_forced_targets_and_chunked_passes(bridge):
    tokens = bridge.to_tokens(MATRIX_TEXT)[0]
    positions = list(range(6, len(tokens) - 1))
    targets = tuple(int(t) for t in tokens[7:])
    scope = ts.SemanticScope(targets)
    whole = attribution_matrix(bridge, MATRIX_TEXT, scope, positions)
    for per_pass in (1, 2):
        chunked = attribution_matrix(
            bridge, MATRIX_TEXT, scope, positions, directions_per_pass=per_pass
        )
        torch.testing.assert_close(whole.scores, chunked.scores, rtol=1e-9, atol=1e-12)
    assert whole.target_ids.tolist() == list(targets)
    for row, (position, target) in enumerate(zip(positions, targets, strict=True)):
        single = ts.attribute(bridge, MATRIX_TEXT, ts.SemanticScope(target), position=position)
        torch.testing.assert_close(whole.scores[row], single.scores[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(whole.target_probs[row], single.target_probs[0])


def test_matrix_refuses_bad_input_and_leaves_no_hooks(bridge):
    flags = [p.requires_grad for p in bridge.parameters()]
    with pytest.raises(ValueError, match="non-empty sequence"):
        attribution_matrix(bridge, MATRIX_TEXT, ts.FisherScope(), [])
    with pytest.raises(IndexError, match="out of range"):
        attribution_matrix(bridge, MATRIX_TEXT, ts.FisherScope(), [0, 99])
    with pytest.raises(ValueError, match="one prompt"):
        attribution_matrix(bridge, [MATRIX_TEXT, "the cat"], ts.FisherScope(), [1])
    with pytest.raises(ValueError, match="targets"):
        attribution_matrix(bridge, MATRIX_TEXT, ts.SemanticScope((" one", " two")), [1, 2, 3])
    assert attached_hooks(bridge) == 0
    assert [p.requires_grad for p in bridge.parameters()] == flags


# Time series -----------------------------------------------------------------------------------


def test_serialize_fixed_width_in_range_and_invertible():
    series = timeseries.brownian_motion(50, seed=1)
    serialized = timeseries.serialize(series)
    values = serialized.text.rstrip(",").split(",")
    assert serialized.text.endswith(",") and len(values) == 50
    assert all(len(v) == 2 for v in values)
    assert [int(v) for v in values] == serialized.integers.tolist()
    low, high = int(serialized.integers.min()), int(serialized.integers.max())
    # 15% headroom of 10..99 at each end: the extremes land near 23 and 86.
    assert 10 < low <= 25 and 84 <= high < 99
    step = 1 / serialized.scale
    assert (serialized.to_values(serialized.integers) - series).abs().max() <= step / 2 + 1e-12
    torch.testing.assert_close(serialized.encode(series), serialized.integers)
    three = timeseries.serialize(series, digits=3, headroom=0.0)
    assert int(three.integers.min()) == 100 and int(three.integers.max()) == 999


def test_serialize_refuses_bad_input():
    with pytest.raises(ValueError, match="constant"):
        timeseries.serialize(torch.ones(5))
    with pytest.raises(ValueError, match="1-D"):
        timeseries.serialize(torch.ones(2, 3))
    with pytest.raises(ValueError, match="digits"):
        timeseries.serialize(torch.arange(5.0), digits=6)


def test_generators_are_seeded_and_follow_their_definitions():
    torch.testing.assert_close(
        timeseries.brownian_motion(20, seed=4), timeseries.brownian_motion(20, seed=4)
    )
    assert not torch.equal(
        timeseries.brownian_motion(20, seed=4), timeseries.brownian_motion(20, seed=5)
    )
    walk = timeseries.brownian_motion(20_001, seed=0)
    assert walk[0] == 0 and walk.diff().std().item() == pytest.approx(1.0, rel=0.03)
    gbm = timeseries.geometric_brownian_motion(200, volatility=0.1, seed=2)
    expected = torch.exp(
        timeseries.brownian_motion(200, diffusion=0.1, seed=2) - 0.005 * torch.arange(200)
    )
    torch.testing.assert_close(gbm, expected)
    # One Euler step from (1, 1, 1), no burn-in: x' = x + dt * sigma * (y - x) = 1.
    lorenz = timeseries.lorenz_x(3, burn_in=0, steps_per_value=1, dt=0.01)
    assert lorenz[0].item() == pytest.approx(1.0)
    assert lorenz[1].item() == pytest.approx(1.0 + 0.01 * 10 * (1.26 - 1.0))
    assert float(timeseries.lorenz_x(300).abs().max()) < 25


def test_value_token_groups_for_single_and_multi_digit_tokens():
    assert timeseries.value_token_groups(["<s>", "6", "2", ",", "6", "5", ","], 2) == [
        [1, 2],
        [4, 5],
    ]
    assert timeseries.value_token_groups(["62", ",", "65", ","], 2) == [[0], [2]]
    with pytest.raises(ValueError, match="spell 1 values, expected 2"):
        timeseries.value_token_groups(["6", "2", ","], 2)
    scores = torch.tensor([9.0, 3.0, 4.0, 7.0, 1.0, 0.0, 2.0])
    torch.testing.assert_close(
        timeseries.value_scores(scores, [[1, 2], [4, 5]]),
        torch.tensor([5.0, 1.0], dtype=torch.float64),
    )


def digit_model():
    """A tiny bridge whose tokenizer has one token per digit and a comma (like SmolLM2's)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<bos>", "<eos>", "<pad>", "<unk>", ",", *"0123456789"])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.Punctuation()]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    directory = tempfile.mkdtemp(prefix="tlscopes-digits-")
    fast.save_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    hf_model = helpers.build_hf_llama(vocab_size=len(vocab), max_position_embeddings=64)
    return TransformerBridge.boot_transformers(
        "tiny-llama", hf_model=hf_model, tokenizer=tokenizer, dtype=torch.float64
    ).eval()


@pytest.fixture(scope="module")
def digits():
    return digit_model()


def test_next_value_distribution_is_the_product_of_digit_probabilities(digits):
    text = "12,15,19,"
    frame = timeseries.next_value_distribution(digits, text)
    assert frame["value"].tolist() == list(range(10, 100))
    assert frame["share"].sum() == pytest.approx(1.0)
    assert 0 < frame["probability"].sum() < 1
    ids = timeseries.digit_token_ids(digits)
    for value in (10, 47, 99):
        first, second = divmod(value, 10)
        tokens = digits.to_tokens(text + str(first))
        with torch.no_grad():
            probs = torch.softmax(digits(tokens)[0].double(), dim=-1)
        expected = float(probs[-2, ids[first]] * probs[-1, ids[second]])
        assert float(frame.set_index("value").loc[value, "probability"]) == pytest.approx(
            expected,
            rel=1e-6,  # Hugging Face Llama's float32 rotary tables and softmax
        )


def test_value_scores_on_a_serialized_prompt(digits):
    serialized = timeseries.serialize(timeseries.lorenz_x(12))
    result = ts.attribute(digits, serialized.text, ts.TemperatureScope())
    groups = timeseries.value_token_groups(result.tokens[0], 12)
    assert groups[0] == [1, 2] and groups[-1] == [34, 35]
    scores = timeseries.value_scores(result.scores[0], groups)
    assert scores.shape == (12,) and bool((scores > 0).all())


def test_digit_token_ids_refuses_word_tokenizers(bridge):
    with pytest.raises(ValueError):
        timeseries.digit_token_ids(bridge)


# Figure helpers and scripts --------------------------------------------------------------------


def test_token_lines_wrap_and_draw():
    lines = token_lines(["aaaa", "bb", "cccc", "d"], width=6)
    assert lines == [[(0, 0), (1, 4)], [(2, 0), (3, 4)]]
    figure = Figure(figsize=(4, 2))
    draw_tokens(
        figure.subplots(), ["the", " cat\n", " sat"], [0.0, 1.0, float("nan")], highlight=[1]
    )
    with pytest.raises(ValueError, match="3 tokens but 2 values"):
        draw_tokens(figure.subplots(), ["a", "b", "c"], [0.1, 0.2])


def test_tokens_page_opens_offline():
    page = tokens_page("t <b>", [("row", ["a", "b"], [0.0, 1.0])])
    assert page.startswith("<!DOCTYPE html>") and "t &lt;b&gt;" in page
    assert "<script" in page and "unpkg.com" not in page and "cdn." not in page


def test_token_rows_page_inlines_the_javascript_once():
    rows = [(f"row {i}", [0.1 * i, 1.0, 0.5]) for i in range(6)]
    page = token_rows_page(
        "rows", ["a", "b", "c"], rows, note="n < 1", extra_html="<table></table>"
    )
    single = tokens_page("one", [("row", ["a", "b", "c"], [0.0, 1.0, 0.5])])
    assert "row 5" in page and "n &lt; 1" in page and page.endswith("<table></table></body></html>")
    assert len(page) < 1.2 * len(single)
    assert "unpkg.com" not in page


def load_script(name: str):
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_case_scripts_write_their_figures(bridge, digits, tmp_path):
    bias = load_script("case_bias")
    written = bias.run(bridge, tmp_path, text=TEXT)
    translation = load_script("case_translation")
    written += translation.run(bridge, tmp_path, german="ich bin hier .", english="one two three")
    series = load_script("case_timeseries")
    written += series.run(digits, tmp_path, n_values=8)
    names = sorted(path.name for path in written)
    assert names == [
        "bias.html",
        "bias.png",
        "timeseries.html",
        "timeseries.png",
        "translation.html",
        "translation.png",
    ]
    for path in written:
        assert path.stat().st_size > 1000
        if path.suffix == ".png":
            assert path.read_bytes()[:4] == b"\x89PNG"


def test_translation_matrix_rows_are_the_english_positions(bridge):
    translation = load_script("case_translation").translation_matrix(
        bridge, "ich bin hier .", "one two three"
    )
    tokens = translation.result.tokens[0]
    assert [tokens[t] for t in translation.source] == ["ich", "bin", "hier", "."]
    assert [t.strip() for t in translation.targets] == ["one", "two", "three"]
    assert translation.result.scores.shape[0] == 3
