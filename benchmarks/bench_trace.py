"""Time ``trace(model, text)`` against the fused forward pass of the same model on the same text.

Usage::

    python benchmarks/bench_trace.py [--chars 5000] [--layers 2] [--hidden 512] [--repeats 5]

Prints the best-of-N time of each, side by side in one run, and their ratio (target: trace / forward <= 1.3).
Also prints the floor of this method on this machine: forward + one batched gate matmul per layer, which any
exact recomputation of the gates from the hidden sequence has to pay.

With ``--memory`` it instead traces ``--chars`` characters (use 100000) in a child process per storage dtype and
prints the peak resident memory the trace added, against the bytes of the tensors it returns::

    python benchmarks/bench_trace.py --memory --chars 100000
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

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


def _proc_status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def memory_child(chars: int, layers: int, hidden: int, embedding: int, dtype_name: str) -> None:
    """Run in a fresh process: peak RSS added by one trace, and the size of what it stores."""
    torch.manual_seed(0)
    vocab = CharVocab("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?'\"()\n-0123456789")
    config = CharLSTMConfig(vocab_size=len(vocab), num_layers=layers, hidden_size=hidden, embedding_size=embedding)
    model = CharLSTM(config, vocab).eval()
    text = vocab.decode(torch.randint(0, len(vocab), (chars,)))
    trace(model, text[:5000], dtype=getattr(torch, dtype_name))  # warm-up: allocator, kernels, one chunk
    before = _proc_status_bytes("VmRSS")  # resident now, after the warm-up's buffers were freed or cached
    tr = trace(model, text, dtype=getattr(torch, dtype_name))
    peak = _proc_status_bytes("VmHWM")  # the process's peak, reached during this (much larger) trace
    stored = sum(t.numel() * t.element_size() for t in tr.values())
    print(f"{stored} {peak - before}")


def memory(args: argparse.Namespace) -> None:
    print(
        f"model: {args.layers}x{args.hidden} LSTM, embedding {args.embedding}; text: {args.chars} chars; "
        f"chunk {2048} chars"
    )
    for dtype_name in ("float32", "float16"):
        code = (
            "import sys; sys.argv = ['bench_trace']; import bench_trace; "
            f"bench_trace.memory_child({args.chars}, {args.layers}, {args.hidden}, {args.embedding}, '{dtype_name}')"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=str(Path(__file__).parent)
        )
        stored, added = (int(v) for v in out.stdout.split()[-2:])
        mib = 2**20
        print(
            f"{dtype_name}: stored tensors {stored / mib:8.1f} MiB; peak RSS added by the trace "
            f"{added / mib:8.1f} MiB; extra beyond the stored tensors {(added - stored) / mib:6.1f} MiB "
            f"(added / stored = {added / stored:.3f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", type=int, default=5000)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--embedding", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    parser.add_argument("--memory", action="store_true", help="measure peak memory instead of time")
    args = parser.parse_args()
    if args.memory:
        memory(args)
        return

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
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}"
    )
    print(
        f"model: {args.layers}x{args.hidden} LSTM, embedding {args.embedding}; text: {args.chars} chars; "
        f"storage {args.dtype}; best of {args.repeats}"
    )
    print(f"fused forward            {t_forward * 1000:8.1f} ms")
    print(f"trace (all activations)  {t_trace * 1000:8.1f} ms")
    print(f"floor (forward + gemm)   {t_floor * 1000:8.1f} ms")
    print(f"trace / fused forward = {t_trace / t_forward:.2f}   (floor / fused forward = {t_floor / t_forward:.2f})")


if __name__ == "__main__":
    main()
