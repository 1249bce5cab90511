"""AOPC faithfulness evaluation: ablation, protocols, the resumable runner and its tables.

The names below are imported from their modules on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlscopes._lazy import lazy_face

if TYPE_CHECKING:
    from tlscopes.evaluation.ablation import Settings, aopc_from_scores, evaluate_passage
    from tlscopes.evaluation.aopc_arithmetic import (
        FRACTIONS,
        ablation_count,
        aopc,
        fraction_label,
        top_positions,
    )
    from tlscopes.evaluation.datasets import load_hub_passages, load_passages, task_names
    from tlscopes.evaluation.faithfulness import comprehensiveness, filler_token_id, sufficiency
    from tlscopes.evaluation.passages import prepare_passage
    from tlscopes.evaluation.runner import EvaluationRun, RunLock, run_evaluation
    from tlscopes.evaluation.sanity import (
        SanityRun,
        SanitySettings,
        parameter_hash,
        randomised_blocks,
        run_sanity,
    )
    from tlscopes.evaluation.sharding import merge_shards
    from tlscopes.evaluation.statistics import bootstrap_interval, spearman, wilcoxon_signed_rank
    from tlscopes.evaluation.summaries import format_table, paired_tests, summarize

_HOMES = {
    "aopc": "tlscopes.evaluation.aopc_arithmetic",
    "aopc_from_scores": "tlscopes.evaluation.ablation",
    "evaluate_passage": "tlscopes.evaluation.ablation",
    "prepare_passage": "tlscopes.evaluation.passages",
    "ablation_count": "tlscopes.evaluation.aopc_arithmetic",
    "top_positions": "tlscopes.evaluation.aopc_arithmetic",
    "FRACTIONS": "tlscopes.evaluation.aopc_arithmetic",
    "fraction_label": "tlscopes.evaluation.aopc_arithmetic",
    "Settings": "tlscopes.evaluation.ablation",
    "run_evaluation": "tlscopes.evaluation.runner",
    "EvaluationRun": "tlscopes.evaluation.runner",
    "RunLock": "tlscopes.evaluation.runner",
    "load_passages": "tlscopes.evaluation.datasets",
    "task_names": "tlscopes.evaluation.datasets",
    "load_hub_passages": "tlscopes.evaluation.datasets",
    "summarize": "tlscopes.evaluation.summaries",
    "format_table": "tlscopes.evaluation.summaries",
    "paired_tests": "tlscopes.evaluation.summaries",
    "spearman": "tlscopes.evaluation.statistics",
    "wilcoxon_signed_rank": "tlscopes.evaluation.statistics",
    "bootstrap_interval": "tlscopes.evaluation.statistics",
    "filler_token_id": "tlscopes.evaluation.faithfulness",
    "comprehensiveness": "tlscopes.evaluation.faithfulness",
    "sufficiency": "tlscopes.evaluation.faithfulness",
    "merge_shards": "tlscopes.evaluation.sharding",
    "run_sanity": "tlscopes.evaluation.sanity",
    "SanityRun": "tlscopes.evaluation.sanity",
    "SanitySettings": "tlscopes.evaluation.sanity",
    "randomised_blocks": "tlscopes.evaluation.sanity",
    "parameter_hash": "tlscopes.evaluation.sanity",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_face(__name__, _HOMES, globals())
