"""Wall time of head scoring on a random-weight Qwen2 decoder: node EAP-IG, edge EAP-IG, exact patching.

    python bench/probe_cost.py --layers 4 --hidden 256 --heads 8 --kv-heads 2 --batch 8 --length 64

Runs on CUDA when available (and reports peak memory there), else on CPU.
"""

from __future__ import annotations

import argparse
import time

import torch
import transformers

from probes.attribution import node_scores
from probes.edges import edge_scores
from probes.pairs import pad_pairs
from probes.patching import exact_head_effects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float64"])
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = transformers.Qwen2Config(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=4 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=max(args.length, 128),
    )
    torch.manual_seed(0)
    model = transformers.Qwen2ForCausalLM(config).to(device, getattr(torch, args.dtype)).eval()
    clean = torch.randint(1, args.vocab, (args.batch, args.length))
    corrupted = clean.clone()
    corrupted[:, -3] = torch.randint(1, args.vocab, (args.batch,))
    batch = pad_pairs(clean.tolist(), corrupted.tolist(), pad_id=0).to(device)

    runs = {
        "forward": lambda: model(input_ids=batch.clean_ids, attention_mask=batch.attention_mask),
        f"node eap-ig (steps={args.steps})": lambda: node_scores(model, batch, steps=args.steps),
        f"edge eap-ig (steps={args.steps})": lambda: edge_scores(model, batch, steps=args.steps),
        "exact head patching": lambda: exact_head_effects(model, batch),
    }
    print(f"{device} {args.dtype} layers={args.layers} hidden={args.hidden} heads={args.heads}/{args.kv_heads} "
          f"batch={args.batch} length={args.length}")
    for name, run in runs.items():
        with torch.no_grad() if name == "forward" else torch.enable_grad():
            run()  # warm-up
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            run()
            if device == "cuda":
                torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        memory = f"  peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if device == "cuda" else ""
        print(f"{name:28s} {seconds * 1000:9.1f} ms{memory}")


if __name__ == "__main__":
    main()
