"""Model-parameter randomisation on tiny float64 models: the randomised model explains
differently, the restored one exactly as before, and a cascade of 0 blocks changes nothing."""

from __future__ import annotations

import json

import pytest
import torch

from tests import helpers
from tlscopes.cli import main
from tlscopes.evaluation import sanity
from tlscopes.evaluation.run_directory import RunDirectoryError, exclusive_lock
from tlscopes.methods.registry import attribute_methods

PROMPT = "the capital of france is paris and the capital of italy is rome"
PASSAGES = [
    PROMPT,
    "the cat sat on the mat and the dog sat on the mat",
    "one two three four five six seven eight",
]
METHODS = ["fisher", "temperature", "semantic", "saliency", "input_x_gradient", "random"]


def maps(model, methods=("fisher", "semantic", "input_x_gradient", "integrated_gradients")):
    results = attribute_methods(model, PROMPT, list(methods), target=" rome", n_steps=3)
    return {name: result.scores.clone() for name, result in results.items()}


def test_cascade_depths_are_log_spaced_then_all():
    assert sanity.cascade_depths(1) == [1]
    assert sanity.cascade_depths(2) == [1, 2]
    assert sanity.cascade_depths(18) == [1, 2, 4, 8, 16, 18]
    assert sanity.cascade_depths(16) == [1, 2, 4, 8, 16]
    plan = sanity.randomisations(4)
    assert [(r.mode, r.blocks) for r in plan] == [
        ("cascade", (3,)),
        ("cascade", (2, 3)),
        ("cascade", (0, 1, 2, 3)),
        ("independent", (0,)),
        ("independent", (1,)),
        ("independent", (2,)),
        ("independent", (3,)),
    ]
    assert [r.label for r in plan[:3]] == ["3", "2-3", "0-3"]
    assert sanity.randomisations(4, ["cascade"], [0])[0].label == "none"
    with pytest.raises(ValueError, match="modes must be some of cascade, independent"):
        sanity.randomisations(4, ["shuffle"])
    with pytest.raises(ValueError, match="cascade depth must be in 0..4"):
        sanity.randomisations(4, ["cascade"], [5])


def test_randomised_model_explains_differently_and_restored_model_identically(model):
    before_hash = sanity.parameter_hash(model)
    before = maps(model)
    with sanity.randomised_blocks(model, [len(model.blocks) - 1], seed=3):
        assert sanity.parameter_hash(model) != before_hash
        randomised = maps(model)
    for name in before:
        assert not torch.allclose(before[name], randomised[name]), name
    assert sanity.parameter_hash(model) == before_hash
    after = maps(model)
    for name in before:
        assert torch.equal(before[name], after[name]), name


def test_the_model_is_restored_after_an_error(model):
    before_hash = sanity.parameter_hash(model)
    with pytest.raises(RuntimeError, match="inside"):
        with sanity.randomised_blocks(model, range(len(model.blocks)), seed=1):
            raise RuntimeError("inside")
    assert sanity.parameter_hash(model) == before_hash


def test_initialisation_follows_the_scheme_and_is_seeded(model):
    std = 0.05
    model.cfg.initializer_range = std
    block = len(model.blocks) - 1
    first = sanity.block_draws(model, block, seed=7)
    again = sanity.block_draws(model, block, seed=7)
    other = sanity.block_draws(model, block, seed=8)
    weights = []
    with sanity.randomised_blocks(model, [block], seed=7):
        pairs = sanity.block_parameters(model, block)
        assert pairs
        for (module, name), drawn, repeat, changed in zip(pairs, first, again, other, strict=True):
            value = getattr(module, name)
            assert torch.equal(value, drawn) and torch.equal(drawn, repeat)
            if "Norm" in type(module).__name__:
                assert torch.all(value == (1.0 if name in ("w", "weight") else 0.0)), name
            elif value.ndim >= 2:
                assert not torch.equal(drawn, changed)
                weights.append(value.detach().flatten().clone())
            else:
                assert torch.all(value == 0), name
    pooled = torch.cat(weights)
    assert pooled.numel() > 1500
    assert float(pooled.mean()) == pytest.approx(0.0, abs=4 * std / pooled.numel() ** 0.5)
    assert float(pooled.std()) == pytest.approx(std, rel=0.05)


def test_gemma_norms_reset_to_zero_as_its_one_plus_weight_init():
    hf_model = helpers.build_hf_family("gemma3")
    hf_model.config.architectures = [type(hf_model).__name__]
    model = helpers.build_bridge(hf_model)
    with sanity.randomised_blocks(model, [0]):
        norms = [
            getattr(module, name)
            for module, name in sanity.block_parameters(model, 0)
            if "Norm" in type(module).__name__
        ]
        assert norms and all(torch.all(norm == 0) for norm in norms)


def test_missing_initializer_range_is_refused():
    model = helpers.build_bridge()
    model.cfg.initializer_range = None
    before = sanity.parameter_hash(model)
    with pytest.raises(ValueError, match="initializer_range is None"):
        with sanity.randomised_blocks(model, [0]):
            pass
    assert sanity.parameter_hash(model) == before


def test_cascade_of_zero_blocks_gives_rho_one(model):
    settings = sanity.SanitySettings(modes=("cascade",), depths=(0, len(model.blocks)), n_steps=3)
    methods = [*METHODS, "integrated_gradients"]
    rows = sanity.sanity_rows(model, PROMPT, methods, settings=settings)
    assert len(rows) == 2 * len(methods)
    for row in rows[: len(methods)]:
        assert row["blocks"] == "none" and row["n_blocks"] == 0
        assert row["spearman"] == 1.0 and row["jaccard"] == 1.0, row["method"]
        assert row["logit_spearman"] == pytest.approx(1.0)
        assert row["target_logp_change"] == 0.0 and row["top1_same"] == 1
    everything = {row["method"]: row for row in rows[len(methods) :]}
    assert everything["random"]["spearman"] == 1.0  # blind to the model, so it fails the check
    assert everything["fisher"]["spearman"] < 1.0
    assert everything["semantic"]["spearman"] == everything["saliency"]["spearman"]
    assert everything["fisher"]["logit_spearman"] < 1.0


def test_rows_match_their_definitions():
    model = helpers.build_bridge()
    settings = sanity.SanitySettings(modes=("independent",), n_steps=3)
    rows = sanity.sanity_rows(model, PROMPT, ["fisher"], settings=settings)
    assert [row["blocks"] for row in rows] == ["0", "1"]
    inputs = PROMPT.removesuffix(" rome")  # a passage's last token is its target
    original = attribute_methods(model, inputs, ["fisher"], target=" rome")["fisher"]
    with sanity.randomised_blocks(model, [1], settings.seed):
        randomised = attribute_methods(model, inputs, ["fisher"], target=" rome")["fisher"]
    context = torch.arange(1, original.scores.shape[1])  # BOS is not context
    from tlscopes.evaluation.aopc_arithmetic import top_positions
    from tlscopes.evaluation.statistics import spearman

    first, second = original.scores[0].abs(), randomised.scores[0].abs()
    assert rows[1]["spearman"] == pytest.approx(spearman(first[context], second[context]))
    k = max(1, int(0.1 * len(context) + 0.5))
    expected = sanity.jaccard(top_positions(first, context, k), top_positions(second, context, k))
    assert rows[1]["jaccard"] == expected
    assert sanity.jaccard([1, 2], [2, 3]) == pytest.approx(1 / 3)


def test_run_sanity_resumes_and_refuses_other_settings(tmp_path):
    model = helpers.build_bridge()
    settings = sanity.SanitySettings(modes=("cascade",))
    output = tmp_path / "run"
    first = sanity.run_sanity(
        model,
        {"lambada": PASSAGES[:2]},
        ["fisher", "random"],
        output,
        settings=settings,
        progress=False,
    )
    assert first.computed == 2 and len(first.per_passage) == 2 * 2 * 2
    record = json.loads((output / "run.json").read_text())
    assert record["parameter_sha256"] == sanity.parameter_hash(model)
    assert record["randomisations"] == ["cascade:1", "cascade:0-1"]
    assert (output / "summary.csv").exists()
    # An interruption that left part of passage 1's rows: they are removed and recomputed.
    path = output / "per_passage.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-2]))
    again = sanity.run_sanity(
        model,
        {"lambada": PASSAGES},
        ["fisher", "random"],
        output,
        settings=settings,
        progress=False,
    )
    assert again.computed == 2 and again.already_done == 1
    assert len(again.per_passage) == 3 * 2 * 2
    assert again.per_passage.equals(sanity.read_sanity_rows(path))
    summary = again.summary
    assert set(summary["n"]) == {3}
    assert (summary[summary["method"] == "random"]["spearman_mean"] == 1.0).all()
    with pytest.raises(ValueError, match="different settings"):
        sanity.run_sanity(
            model, {"lambada": PASSAGES}, ["fisher"], output, settings=settings, progress=False
        )
    with exclusive_lock(output), pytest.raises(RunDirectoryError, match="another run"):
        sanity.run_sanity(
            model,
            {"lambada": PASSAGES},
            ["fisher", "random"],
            output,
            settings=settings,
            progress=False,
        )


def test_blocks_are_summarised_and_drawn_in_numeric_order():
    import pandas as pd

    row = dict(task="lambada", method="fisher", mode="independent", n_blocks=1, n_context=5)
    values = dict(spearman=0.5, jaccard=0.5, logit_spearman=0.5, target_logp_change=0.0)
    rows = [
        {**row, **values, "passage": 0, "text_sha": "x", "blocks": str(block), "top1_same": 1}
        for block in (10, 2, 0, 11, 1)
    ]
    summary = sanity.summarize_sanity(pd.DataFrame(rows))
    assert summary["blocks"].tolist() == ["0", "1", "2", "10", "11"]
    (line, _) = sanity.plot_sanity(summary).axes[0].get_lines()
    assert list(line.get_xdata()) == [0, 1, 2, 10, 11]


def test_plot_has_one_line_per_method():
    model = helpers.build_bridge()
    rows = sanity.sanity_rows(model, PROMPT, ["fisher", "random"])
    import pandas as pd

    figure = sanity.plot_sanity(sanity.summarize_sanity(pd.DataFrame(rows)), "tiny")
    cascade, independent = figure.axes
    assert len(cascade.get_lines()) == 2 + 1  # two methods and the zero line
    assert len(independent.get_lines()) == 2 + 1
    only_cascade = pd.DataFrame([row for row in rows if row["mode"] == "cascade"])
    assert len(sanity.plot_sanity(sanity.summarize_sanity(only_cascade)).axes) == 1


def test_cli_sanity_writes_rows_summary_and_figure(tmp_path, capsys):
    directory = tmp_path / "tiny"
    helpers.save_hf_family("llama", str(directory))
    prompts = tmp_path / "passages.json"
    prompts.write_text(json.dumps([{"text": text} for text in PASSAGES[:2]]))
    output = tmp_path / "out"
    arguments = ["sanity", "--prompts", str(prompts), "--methods", "fisher,random", "--modes"]
    arguments += ["cascade", "--model", str(directory), "--output", str(output), "--no-progress"]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert "2 passages (2 computed now, 0 already done, 0 skipped)" in printed
    assert (output / "rho_vs_blocks.png").stat().st_size > 0
    assert len(sanity.read_sanity_rows(output / "per_passage.csv")) == 2 * 2 * 2


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["sanity"], "--output is required"),
        (["sanity", "--output", "x", "--modes", "shuffle"], "--modes takes cascade and/or"),
        (["sanity", "--output", "x", "--depths", "1,a"], "--depths must be integers"),
        (["sanity", "--output", "x", "--methods", "fisher,bad"], "unknown method 'bad'"),
    ],
)
def test_cli_sanity_refuses_bad_arguments(arguments, message, capsys):
    assert main(arguments) == 2
    assert message in capsys.readouterr().err
