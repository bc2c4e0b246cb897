"""Time ``trace(model, text)`` against the fused forward pass of the same model on the same text.

Usage::

    python benchmarks/bench_trace.py [--chars 5000] [--layers 2] [--hidden 512] [--repeats 5]

Prints the best-of-N time of each, side by side in one run, and their ratio (target: trace / forward <= 1.3).
Also prints the floor of this method on this machine: forward + one batched gate matmul per layer, which any
exact recomputation of the gates from the hidden sequence has to pay.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from lstm_interp import CharLSTM, CharLSTMConfig, CharVocab, trace


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", type=int, default=5000)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--embedding", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    args = parser.parse_args()

    torch.manual_seed(0)
    alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?'\"()\n-0123456789"
    vocab = CharVocab(alphabet)
    config = CharLSTMConfig(
        vocab_size=len(vocab), num_layers=args.layers, hidden_size=args.hidden, embedding_size=args.embedding
    )
    model = CharLSTM(config, vocab).eval()
    ids = torch.randint(0, len(vocab), (args.chars,))
    text = vocab.decode(ids)
    dtype = getattr(torch, args.dtype)

    def forward() -> None:
        with torch.no_grad():
            model(ids[None])

    def do_trace() -> None:
        trace(model, text, dtype=dtype)

    def floor() -> None:
        # The fused forward plus, per layer, one (T, I+H) x (I+H, 4H) matmul: the gates' unavoidable extra cost.
        with torch.no_grad():
            x = model.embedding(ids)
            for layer in model.layers:
                out, _ = layer(x[None])
                torch.cat([x, out[0]], 1) @ torch.cat([layer.weight_ih_l0, layer.weight_hh_l0], 1).T
                x = out[0]
            model.head(x)

    t_forward = best_time(forward, args.repeats)
    t_trace = best_time(do_trace, args.repeats)
    t_floor = best_time(floor, args.repeats)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    print(f"model: {args.layers}x{args.hidden} LSTM, embedding {args.embedding}; text: {args.chars} chars; "
          f"storage {args.dtype}; best of {args.repeats}")
    print(f"fused forward            {t_forward * 1000:8.1f} ms")
    print(f"trace (all activations)  {t_trace * 1000:8.1f} ms")
    print(f"floor (forward + gemm)   {t_floor * 1000:8.1f} ms")
    print(f"trace / fused forward = {t_trace / t_forward:.2f}   (floor / fused forward = {t_floor / t_forward:.2f})")


if __name__ == "__main__":
    main()
