"""Attribution while generating: generation (greedy, seeded sampling, eos) and every step's row
against a single attribution at that position of the generated text."""

from __future__ import annotations

import pytest
import torch

import tlscopes as ts
from tests import helpers
from tests.models import TOKENIZERLESS_VARIANTS
from tlscopes.generation.attribution import attribute_generation

PROMPTS = ["the cat sat on", "one two"]
SCOPES = {
    "fisher": ts.FisherScope(),
    "fisher-rank2": ts.FisherScope(rank=2),
    "temperature": ts.TemperatureScope(),
    "semantic": ts.SemanticScope(),
}


def attached_hooks(model):
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


def single_row(model, result, index, step, scope):
    """attribute() at the step's position of the generated text (the generated token as a
    Semantic target)."""
    length = len(result.tokens[index])
    if isinstance(scope, ts.SemanticScope) and scope.target is None:
        scope = ts.SemanticScope(int(result.generated_ids[index, step]))
    position = int(result.positions[index, step])
    return ts.attribute(model, result.token_ids[index, :length], scope, position=position)


@pytest.mark.parametrize("name", sorted(SCOPES))
def test_each_step_equals_attribute_at_its_position(model, name):
    scope = SCOPES[name]
    result = attribute_generation(model, PROMPTS, scope, max_new_tokens=4, stop_at_eos=False)
    if name == "semantic":
        assert result.details["target_ids"] == result.generated_ids.tolist()
        assert result.details["target_probs"] == result.probs.tolist()
    assert result.scores.shape == (2, 4, result.token_ids.shape[1])
    assert result.generated_lengths.tolist() == [4, 4]
    for index in range(2):
        length = len(result.tokens[index])
        assert length == int(result.prompt_lengths[index]) + 4
        for step in range(4):
            single = single_row(model, result, index, step, scope)
            torch.testing.assert_close(
                result.scores[index, step, :length], single.scores[0], rtol=1e-9, atol=1e-12
            )
            position = int(result.positions[index, step])
            assert position == int(result.prompt_lengths[index]) + step - 1
            assert not bool(result.scores[index, step, position + 1 :].any())
            assert result.top_tokens[index][step] == single.top_tokens[0]
            torch.testing.assert_close(result.top_probs[index, step].float(), single.top_probs[0])
            as_attribution = result.step(index, step)
            torch.testing.assert_close(as_attribution.scores, single.scores, rtol=1e-9, atol=1e-12)
            assert as_attribution.positions.tolist() == single.positions.tolist()
            assert as_attribution.tokens == single.tokens
            assert as_attribution.top_tokens == single.top_tokens
            assert as_attribution.target_tokens == single.target_tokens
            torch.testing.assert_close(as_attribution.details, single.details)
    assert attached_hooks(model) == 0


def test_direction_scope_and_per_prompt_vectors(model):
    d_model = int(model.cfg.d_model)
    vectors = torch.randn(
        2, d_model, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    result = attribute_generation(model, PROMPTS, ts.DirectionScope(vectors), max_new_tokens=3)
    for index in range(2):
        for step in range(int(result.generated_lengths[index])):
            expected = single_row(model, result, index, step, ts.DirectionScope(vectors[index]))
            length = len(result.tokens[index])
            torch.testing.assert_close(
                result.scores[index, step, :length], expected.scores[0], rtol=1e-9, atol=1e-12
            )


def test_records_are_the_models_distribution_at_each_step(model):
    result = attribute_generation(model, PROMPTS[0], ts.TemperatureScope(), max_new_tokens=4)
    count = int(result.generated_lengths[0])
    ids = result.token_ids[:1, : len(result.tokens[0])].to(model.W_U.device)
    with torch.no_grad():
        logits = model(ids)[0].double().cpu()
    probs = torch.softmax(logits, dim=-1)
    for step in range(count):
        position = int(result.positions[0, step])
        token = int(result.generated_ids[0, step])
        torch.testing.assert_close(float(result.probs[0, step]), float(probs[position, token]))
        entropy = -(probs[position] * probs[position].log()).sum()
        torch.testing.assert_close(float(result.entropy[0, step]), float(entropy))
        top = probs[position].topk(3)
        assert result.top_token_ids[0, step, :3].tolist() == top.indices.tolist()
    # beta_eff is the Temperature scope's ||y||, kept per step.
    torch.testing.assert_close(result.beta_eff[0, :count].tolist(), result.details["beta_eff"][0])


def test_batched_prompts_equal_unbatched(model):
    prompts = ["the cat sat on the mat", "one", "red blue green"]
    for options in ({}, {"do_sample": True, "seed": 3, "temperature": 1.5}):
        batched = attribute_generation(
            model, prompts, ts.FisherScope(), max_new_tokens=3, **options
        )
        for index, prompt in enumerate(prompts):
            alone = attribute_generation(
                model, prompt, ts.FisherScope(), max_new_tokens=3, **options
            )
            count = int(alone.generated_lengths[0])
            length = len(alone.tokens[0])
            assert batched.tokens[index] == alone.tokens[0]
            assert batched.generated_ids[index, :count].tolist() == alone.generated_ids[0].tolist()
            torch.testing.assert_close(
                batched.scores[index, :count, :length], alone.scores[0], rtol=1e-9, atol=1e-12
            )
            torch.testing.assert_close(batched.probs[index, :count], alone.probs[0])
            assert batched.top_tokens[index] == alone.top_tokens[0]


def test_greedy_generation_is_argmax_step_by_step(model):
    result = attribute_generation(model, PROMPTS[0], ts.TemperatureScope(), max_new_tokens=5)
    tokens = model.to_tokens(PROMPTS[0]).cpu()
    for step in range(5):
        with torch.no_grad():
            logits = model(tokens.to(model.W_U.device))[0, -1]
        chosen = int(logits.argmax())
        assert int(result.generated_ids[0, step]) == chosen
        tokens = torch.cat([tokens, torch.tensor([[chosen]])], dim=1)
        if chosen == model.tokenizer.eos_token_id:
            break
    assert result.token_ids[0, : tokens.shape[1]].tolist() == tokens[0].tolist()


@pytest.fixture(scope="module")
def bridge():
    return helpers.build_bridge()


def test_seeded_sampling_is_reproducible_and_seeds_differ(bridge):
    def sample(seed, **options):
        return attribute_generation(
            bridge,
            PROMPTS,
            ts.TemperatureScope(),
            max_new_tokens=8,
            do_sample=True,
            seed=seed,
            stop_at_eos=False,
            **options,
        ).generated_ids

    first = sample(0, temperature=2.0)
    assert torch.equal(first, sample(0, temperature=2.0))
    assert not torch.equal(first, sample(1, temperature=2.0))
    greedy = attribute_generation(
        bridge, PROMPTS, ts.TemperatureScope(), max_new_tokens=8, stop_at_eos=False
    )
    # top_k=1 keeps only the most likely token: sampling is then greedy, whatever the seed.
    assert torch.equal(sample(5, top_k=1), greedy.generated_ids)
    assert not torch.equal(first, greedy.generated_ids)


def test_sampling_stays_within_top_k(bridge):
    result = attribute_generation(
        bridge,
        PROMPTS,
        ts.FisherScope(),
        max_new_tokens=8,
        do_sample=True,
        top_k=3,
        seed=2,
        temperature=3.0,
        stop_at_eos=False,
        top_predictions=3,
    )
    within = (result.top_token_ids == result.generated_ids[..., None]).any(dim=-1)
    assert bool(within.all())
    assert not bool((result.generated_ids == result.top_token_ids[..., 0]).all())


def eos_stopping_bridge(prompts=PROMPTS, step=3, max_new_tokens=8):
    """A tiny bridge on which prompt 0 generates eos at `step` (greedy) and prompt 1 does not:
    eos gets a copy of the unembedding of the token prompt 0 generates there, slightly larger,
    so it wins wherever that token would."""
    model = helpers.build_bridge()
    before = attribute_generation(
        model, prompts, ts.TemperatureScope(), max_new_tokens=max_new_tokens
    )
    eos = model.tokenizer.eos_token_id
    assert eos not in before.generated_ids.tolist()[0]
    replaced = int(before.generated_ids[0, step])
    with torch.no_grad():
        lm_head = model.original_model.lm_head.weight
        lm_head[eos] = 1.02 * lm_head[replaced]
    return model


def test_a_prompt_stops_at_eos_and_the_others_go_on():
    model = eos_stopping_bridge()
    prompts = PROMPTS
    stopped = attribute_generation(model, prompts, ts.TemperatureScope(), max_new_tokens=8)
    going_on = attribute_generation(
        model, prompts, ts.TemperatureScope(), max_new_tokens=8, stop_at_eos=False
    )
    assert stopped.generated_lengths.tolist() == [4, 8]
    assert stopped.generated_tokens[0][-1] == "<eos>"
    assert stopped.generated_ids[0, :4].tolist() == going_on.generated_ids[0, :4].tolist()
    assert going_on.generated_lengths.tolist() == [8, 8]
    assert len(stopped.tokens[0]) == int(stopped.prompt_lengths[0]) + 4
    torch.testing.assert_close(
        stopped.scores[0, :4, : len(stopped.tokens[0])],
        going_on.scores[0, :4, : len(stopped.tokens[0])],
    )
    assert not bool(stopped.scores[0, 4:].any())
    assert not bool(stopped.probs[0, 4:].any())
    assert stopped.generated_ids[0, 4:].tolist() == [model.tokenizer.pad_token_id] * 4
    torch.testing.assert_close(stopped.scores[1], going_on.scores[1, :, : stopped.scores.shape[2]])


@pytest.mark.parametrize("name", sorted(TOKENIZERLESS_VARIANTS))
def test_models_without_a_tokenizer_take_ids_and_show_ids(name):
    model = TOKENIZERLESS_VARIANTS[name]()
    ids = torch.tensor([[3, 17, 5, 9], [4, 8, 2, 30]])
    result = attribute_generation(model, ids, ts.FisherScope(), max_new_tokens=3)
    assert result.generated_lengths.tolist() == [3, 3]  # no tokenizer, no eos
    assert result.tokens[0][:4] == ["<3>", "<17>", "<5>", "<9>"]
    assert result.generated_tokens[1] == [f"<{int(i)}>" for i in result.generated_ids[1]]
    assert result.generated_text[1] == "".join(result.generated_tokens[1])
    assert result.prompt_text[0] == "<3><17><5><9>"
    for step in range(3):
        single = single_row(model, result, 1, step, ts.FisherScope())
        torch.testing.assert_close(result.scores[1, step], single.scores[0], rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="no tokenizer"):
        attribute_generation(model, "the cat", ts.FisherScope())


def test_provenance_records_the_generation_settings(bridge):
    result = attribute_generation(
        bridge, "one two", ts.FisherScope(rank=2), max_new_tokens=2, do_sample=True, seed=7
    )
    assert result.prompt_text == [bridge.tokenizer.decode(bridge.to_tokens("one two")[0])]
    assert result.generated_text == [bridge.tokenizer.decode(result.generated_ids[0])]
    assert result.info["method"] == "fisher"
    assert result.info["scope"] == {"name": "FisherScope", "rank": 2}
    assert result.info["parameters"] == {
        "max_new_tokens": 2,
        "do_sample": True,
        "temperature": 1.0,
        "top_k": None,
        "seed": 7,
        "stop_at_eos": True,
    }
    assert len(result.details["eigenvalues"][0]) == int(result.generated_lengths[0])


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"max_new_tokens": 0}, ValueError, "max_new_tokens must be at least 1"),
        ({"max_new_tokens": 2.5}, TypeError, "max_new_tokens must be an int"),
        ({"max_new_tokens": 40}, ValueError, "exceeds the model's context of 32"),
        ({"temperature": 0.5}, ValueError, "pass do_sample=True"),
        ({"top_k": 3}, ValueError, "pass do_sample=True"),
        ({"do_sample": True, "temperature": 0.0}, ValueError, "positive and finite"),
        ({"do_sample": True, "top_k": 0}, ValueError, "top_k must be a positive integer"),
        ({"stop_at_eos": "yes"}, TypeError, "stop_at_eos must be True or False"),
        ({"top_predictions": 0}, ValueError, "top_k must be a positive integer"),
    ],
)
def test_bad_arguments_are_refused(bridge, options, error, message):
    with pytest.raises(error, match=message):
        attribute_generation(bridge, "one two", ts.FisherScope(), **options)


def test_bad_scopes_are_refused(bridge):
    with pytest.raises(TypeError, match="must be a tlscopes Scope"):
        attribute_generation(bridge, "one two", "fisher")
    with pytest.raises(ValueError, match="3 targets for 2 prompts"):
        attribute_generation(bridge, PROMPTS, ts.SemanticScope(("a", "the", "cat")))
    vectors = torch.ones(3, int(bridge.cfg.d_model), dtype=torch.float64)
    with pytest.raises(ValueError, match="3 vectors for 2 prompts"):
        attribute_generation(bridge, PROMPTS, ts.DirectionScope(vectors))


@pytest.mark.parametrize(
    "target, expected",
    [(("paris", 7), ("paris", 7)), (torch.tensor(9), (9, 9)), ("cat", ("cat", "cat"))],
    ids=["per-prompt", "tensor", "one-for-all"],
)
def test_a_fixed_semantic_target(bridge, target, expected):
    result = attribute_generation(bridge, PROMPTS, ts.SemanticScope(target), max_new_tokens=2)
    for index in range(2):
        single = single_row(bridge, result, index, 1, ts.SemanticScope(expected[index]))
        length = len(result.tokens[index])
        torch.testing.assert_close(result.scores[index, 1, :length], single.scores[0])
        assert result.details["target_ids"][index][1] == int(single.target_ids[0])
        torch.testing.assert_close(
            result.details["target_probs"][index][1], float(single.target_probs[0])
        )


def test_an_internal_direction(model):
    hook = "blocks.0.hook_resid_post"
    vector = torch.randn(int(model.cfg.d_model), generator=torch.Generator().manual_seed(4))
    scope = ts.DirectionScope(vector.double(), at=hook)
    result = attribute_generation(model, PROMPTS[1], scope, max_new_tokens=3)
    for step in range(int(result.generated_lengths[0])):
        single = single_row(model, result, 0, step, scope)
        length = len(result.tokens[0])
        torch.testing.assert_close(
            result.scores[0, step, :length], single.scores[0], rtol=1e-9, atol=1e-12
        )


def test_inside_inference_mode(bridge):
    expected = attribute_generation(bridge, PROMPTS, ts.FisherScope(), max_new_tokens=3)
    with torch.inference_mode():
        inside = attribute_generation(bridge, PROMPTS, ts.FisherScope(), max_new_tokens=3)
    assert torch.equal(inside.scores, expected.scores)
    assert torch.equal(inside.generated_ids, expected.generated_ids)
    assert attached_hooks(bridge) == 0
