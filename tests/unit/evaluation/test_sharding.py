"""Sharded runs: two gloo processes write exactly the rows of one process; resume and merge."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests import helpers
from tlscopes.evaluation import runner as evaluate
from tlscopes.evaluation.ablation import Settings
from tlscopes.evaluation.run_directory import PER_PASSAGE, SKIPPED, SUMMARY
from tlscopes.evaluation.sharding import Shard, merge_shards

TEXTS = {
    "lambada": [
        "the capital of france is paris",
        "the capital of italy is rome",
        "a",  # unusable: too short
        "the cat sat on the mat and the dog",
    ],
    "iwslt": ["the dog sat on the mat", "paris is the capital of france"],
}
METHODS = ["fisher", "semantic", "integrated_gradients", "random"]
SETTINGS = Settings(n_steps=2)


def _free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def _rank(rank: int, world_size: int, port: int, output: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        model = helpers.build_bridge()
        evaluate.run_evaluation(
            model,
            TEXTS,
            METHODS,
            output,
            settings=SETTINGS,
            progress=False,
            shard=Shard(rank, world_size),
        )
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("one")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = helpers.build_bridge()
        evaluate.run_evaluation(
            model, TEXTS, METHODS, output, settings=SETTINGS, progress=False, shard=Shard()
        )
    finally:
        torch.set_num_threads(threads)
    return output


def test_two_gloo_processes_write_the_rows_of_one(one_process, tmp_path):
    mp.spawn(_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for name in (PER_PASSAGE, SKIPPED, SUMMARY):
        assert (tmp_path / name).read_text() == (one_process / name).read_text(), name
    assert not list(tmp_path.glob("*.rank*.csv"))  # merged and removed


def test_each_rank_takes_every_world_size_th_passage():
    order = [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2)]
    assert Shard(0, 2).take(order) == [("a", 0), ("a", 1), ("a", 2)]
    assert Shard(1, 2).take(order) == [("b", 0), ("b", 1)]
    assert Shard(1, 2).file("per_passage.csv") == "per_passage.rank1.csv"
    assert Shard().file("per_passage.csv") == "per_passage.csv"
    with pytest.raises(ValueError, match="rank 2"):
        Shard(2, 2)


def test_shards_resume_and_merge_without_torch_distributed(one_process, tmp_path):
    """Ranks run one after another here (no process group: no automatic merge); one is
    interrupted after a passage, resumes its own shard, and --merge gives one process's rows."""
    torch.set_num_threads(1)
    model = helpers.build_bridge()
    run = evaluate.run_evaluation
    for rank in (0, 1):
        run(
            model, TEXTS, METHODS, tmp_path, settings=SETTINGS, progress=False, shard=Shard(rank, 2)
        )
    shard_file = tmp_path / "per_passage.rank1.csv"
    lines = shard_file.read_text().splitlines(keepends=True)
    shard_file.write_text("".join(lines[: 1 + len(METHODS)]))  # rank 1 lost all but a passage
    resumed = run(
        model, TEXTS, METHODS, tmp_path, settings=SETTINGS, progress=False, shard=Shard(1, 2)
    )
    assert resumed.computed == 2 and resumed.already_done == 1
    from tlscopes import cli

    args = cli.build_parser().parse_args(["evaluate", "--merge", str(tmp_path)])
    assert cli.commands()["evaluate"].run(args) == 0  # tlscopes evaluate --merge DIR
    # The summary too: the ranks write none, and the merge writes the whole run's.
    for name in (PER_PASSAGE, SKIPPED, SUMMARY):
        assert (tmp_path / name).read_text() == (one_process / name).read_text(), name
    merge_shards(tmp_path)  # nothing left to merge: unchanged
    assert (tmp_path / PER_PASSAGE).read_text() == (one_process / PER_PASSAGE).read_text()


def test_a_sharded_run_keeps_out_a_one_process_run_and_a_merge(tmp_path):
    from tlscopes.evaluation.run_directory import RunDirectoryError, exclusive_lock
    from tlscopes.evaluation.sharding import write_order

    model = helpers.build_bridge()
    write_order(tmp_path, 2, list(TEXTS), METHODS)
    texts = {"lambada": TEXTS["lambada"][:1]}
    with exclusive_lock(tmp_path, shared=True):  # as rank 0 holds it while it works
        with pytest.raises(RunDirectoryError, match="another run"):
            evaluate.run_evaluation(model, texts, ["semantic"], tmp_path, progress=False)
        with pytest.raises(RunDirectoryError, match="another run"):
            merge_shards(tmp_path)
        # another rank of the same run shares it
        evaluate.run_evaluation(
            model, texts, ["semantic"], tmp_path, progress=False, shard=Shard(1, 2)
        )


def test_a_half_finished_sharded_run_is_merged_only_when_asked_and_marked_partial(
    one_process, tmp_path, capsys
):
    import json

    from tlscopes import cli

    torch.set_num_threads(1)
    model = helpers.build_bridge()

    def run_rank(rank):
        return evaluate.run_evaluation(
            model, TEXTS, METHODS, tmp_path, settings=SETTINGS, progress=False, shard=Shard(rank, 2)
        )

    for rank in (0, 1):
        run_rank(rank)
    shard_file = tmp_path / "per_passage.rank1.csv"
    lines = shard_file.read_text().splitlines(keepends=True)
    shard_file.write_text("".join(lines[: 1 + len(METHODS)]))  # rank 1 keeps one passage of 3
    before = {path.name: path.read_text() for path in tmp_path.iterdir() if path.is_file()}

    def merge(*options):
        return cli.main(["evaluate", "--merge", str(tmp_path), *options])

    assert merge() == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "rank 1 lacks iwslt passage 1, lambada passage 3;" in err, err
    assert "rank 0" not in err and "--allow-partial" in err
    assert {p.name: p.read_text() for p in tmp_path.iterdir() if p.is_file()} == before

    assert merge("--allow-partial") == 0
    assert "partial merge" in capsys.readouterr().out
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["merge"] == {"partial": True, "missing": {"rank1": ["iwslt 1", "lambada 3"]}}
    assert not list(tmp_path.glob("*.rank*.csv"))

    # Resuming the rank computes what it lacks (run.json's merge entry is not a setting), and
    # the complete merge clears the mark and gives one process's rows.
    assert run_rank(1).computed == 2
    assert merge() == 0
    assert "merge" not in json.loads((tmp_path / "run.json").read_text())
    for name in (PER_PASSAGE, SKIPPED):
        assert (tmp_path / name).read_text() == (one_process / name).read_text(), name
