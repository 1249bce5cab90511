"""Writes two randomly initialised models with an 8,192-token context, GPT-2 and GPT-NeoX, for
measuring TransformerLens' joint-QKV bridges at length (none of their pretrained weights can be
had offline): 4 layers, d_model 256, 8 heads, SmolLM2's tokenizer.

    python scripts/random_long_context_models.py /tmp/random-models
    python scripts/benchmark_long_context.py --models /tmp/random-models/gpt2-8k \\
        --lengths 2048 8192 --methods tlscopes --scopes semantic --threads 1

Memory is what these measure: the weights are random, so the attributions mean nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="where the two model folders are written")
    args = parser.parse_args()

    import torch
    from transformers import (
        AutoTokenizer,
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
    )

    from tlscopes.models import packaged_model_dir

    tokenizer = AutoTokenizer.from_pretrained(str(packaged_model_dir("smollm2-135m")))
    special = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    models = {
        "gpt2-8k": GPT2LMHeadModel(
            GPT2Config(
                vocab_size=len(tokenizer),
                n_positions=8192,
                n_embd=256,
                n_layer=4,
                n_head=8,
                **special,
            )
        ),
        "neox-8k": GPTNeoXForCausalLM(
            GPTNeoXConfig(
                vocab_size=len(tokenizer),
                max_position_embeddings=8192,
                hidden_size=256,
                num_hidden_layers=4,
                num_attention_heads=8,
                intermediate_size=1024,
                rotary_pct=0.25,
                **special,
            )
        ),
    }
    for name, model in models.items():
        torch.manual_seed(0)
        model.init_weights()
        model.config.architectures = [type(model).__name__]
        folder = Path(args.folder) / name
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        print(f"wrote {folder}")


if __name__ == "__main__":
    main()
