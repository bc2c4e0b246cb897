"""Time ``run_with_interventions`` for each kind of intervention against the fused forward pass, in one run.

Usage::

    python benchmarks/bench_interventions.py [--chars 5000] [--repeats 5] [--threads 2] [--random]

The model is the bundled pretrained ``novel`` card (a 2x512 LSTM), loaded from its folder ``model_cards/novel`` (no
network); the text is ``--chars`` characters of War and Peace (``/work/shared/data/war_and_peace.txt``, or
``--text``), and a Patch's source is the trace of another passage of the same length. ``--random`` uses a random
2x512 CharLSTM and random text instead (for a checkout without the card or the data).

Which engine each takes (``lstm_interp/interventions/intervened_layer.py``): hidden-unit interventions, and cells
and gates set to constants (a Clamp, a zero or mean Ablate: issue 26) run the fused kernel on edited weights; a Scale
or Patch of a cell or gate runs a Python step loop in its layer (the other layer stays on its fused kernel).

Every candidate is run once to warm up, then all are interleaved round-robin for ``--repeats`` rounds, and the
median of each is printed with its ratio to the fused forward (``model(ids)`` plus ``log_softmax``, under
``no_grad``) and to ``trace(model, text, names_filter="log_probs")``. Targets, against the fused forward: a
hidden-unit ablate/clamp/patch <= 1.2x (issue 12); a cell or gate set to a constant <= 1.2x (issue 26); a cell or
gate Scale or Patch in one layer <= 3x (issue 12). A second table compares a
cell ablation recording every activation with ``trace(model, text)`` recording every activation.

Before timing it checks that the empty-intervention run equals the plain trace's log_probs to 1e-5.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from lstm_interp import (
    Ablate,
    CharLSTM,
    CharLSTMConfig,
    CharVocab,
    Clamp,
    Patch,
    Scale,
    load_pretrained,
    run_with_interventions,
    trace,
)

REPO = Path(__file__).resolve().parent.parent
CARD = REPO / "model_cards" / "novel"
WAR_AND_PEACE = Path("/work/shared/data/war_and_peace.txt")
UNIT = 254  # the unit every single-unit intervention acts on (layer 1), as in the examples


@dataclass
class Candidate:
    label: str
    fn: Callable[[], object]
    target: float | None = None  # the ratio to the fused forward it must stay under, if the issue sets one
    table: int = 1  # 1: log_probs only; 2: every activation recorded
    times: list[float] | None = None

    def median(self) -> float:
        return statistics.median(self.times or [float("nan")])


def load(args: argparse.Namespace) -> tuple[CharLSTM, str, str, str]:
    """The model, the timed text, the Patch source's text, and a line describing them."""
    if args.random:
        torch.manual_seed(0)
        vocab = CharVocab("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?'\"()\n-0123456789")
        config = CharLSTMConfig(vocab_size=len(vocab), num_layers=2, hidden_size=512, embedding_size=64)
        model = CharLSTM(config, vocab).eval()
        text = vocab.decode(torch.randint(0, len(vocab), (args.chars,)))
        other = vocab.decode(torch.randint(0, len(vocab), (args.chars,)))
        return model, text, other, f"random 2x512 CharLSTM; random text, {args.chars} chars"
    model = load_pretrained(CARD)  # a path, never the short name: no Hub probe
    vocab = model._require_vocab()
    known = set(vocab.chars)
    source = Path(args.text).read_text(encoding="utf-8")
    source = "".join(ch for ch in source if ch in known)
    text = source[args.offset : args.offset + args.chars]
    other = source[args.other_offset : args.other_offset + args.chars]
    if len(text) < args.chars or len(other) < args.chars:
        raise SystemExit(f"{args.text} is too short for passages of {args.chars} chars at the offsets given")
    cfg = model.config
    line = (
        f"{CARD.relative_to(REPO)} ({cfg.num_layers}x{cfg.hidden_size} {cfg.cell.upper()}, embedding "
        f"{cfg.embedding_size}); text: {Path(args.text).name} chars [{args.offset}, {args.offset + args.chars}) "
        f"(characters outside the vocabulary dropped first); patch source [{args.other_offset}, "
        f"{args.other_offset + args.chars})"
    )
    return model, text, other, line


def check(model: CharLSTM, text: str, ids: torch.Tensor) -> None:
    """The empty-intervention run equals the plain trace (required); identity interventions and the fused forward
    are printed for the record."""
    plain = trace(model, text, names_filter="log_probs")["log_probs"]
    empty = run_with_interventions(model, text, [], names_filter="log_probs")["log_probs"]
    diff = (empty - plain).abs().max().item()
    assert diff <= 1e-5, f"empty-intervention run differs from the plain trace by {diff:.3g}"
    with torch.no_grad():
        fused = torch.log_softmax(model(ids[None])[0][0], dim=-1)
    edit = run_with_interventions(model, text, [Scale("layers.1.hidden", [UNIT], 1.0)], names_filter="log_probs")
    step = run_with_interventions(model, text, [Scale("layers.1.cell", [UNIT], 1.0)], names_filter="log_probs")
    print(
        f"check: empty run vs trace max |diff| {diff:.2g} (<= 1e-5: ok); for the record: fused forward vs trace "
        f"{(fused - plain).abs().max().item():.2g}, Scale(hidden, 1.0) 'edit' path vs trace "
        f"{(edit['log_probs'] - plain).abs().max().item():.2g}, Scale(cell, 1.0) 'step' path vs trace "
        f"{(step['log_probs'] - plain).abs().max().item():.2g}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5, help="round-robin rounds after one warm-up (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2: this box's cores)")
    parser.add_argument("--text", default=str(WAR_AND_PEACE))
    parser.add_argument("--offset", type=int, default=0, help="first character of the timed passage")
    parser.add_argument("--other-offset", type=int, default=100_000, help="first character of the Patch source")
    parser.add_argument("--random", action="store_true", help="random 2x512 CharLSTM and random text")
    parser.add_argument("--only", nargs="*", help="time only candidates whose label contains one of these")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, text, other, described = load(args)
    ids = model._require_vocab().encode(text)
    check(model, text, ids)
    source = trace(model, other, names_filter="layers.1.hidden")
    h1 = "layers.1.hidden"

    def forward() -> None:
        with torch.no_grad():
            torch.log_softmax(model(ids[None])[0], dim=-1)

    def forward_flushed() -> None:  # as the trace runs: subnormals flushed to zero
        flushing = torch.set_flush_denormal(True)
        try:
            forward()
        finally:
            if flushing:
                torch.set_flush_denormal(False)

    def run(*ivs, names_filter="log_probs") -> Callable[[], object]:
        return lambda: run_with_interventions(model, text, list(ivs), names_filter=names_filter)

    candidates = [
        Candidate("fused forward + log_softmax", forward),
        Candidate("  same, subnormals flushed", forward_flushed),
        Candidate('trace(names_filter="log_probs")', lambda: trace(model, text, names_filter="log_probs")),
        Candidate("hidden Ablate zero, 1 unit (L1)", run(Ablate(h1, [UNIT])), 1.2),
        Candidate("hidden Ablate zero, 10 units (L1)", run(Ablate(h1, list(range(UNIT - 4, UNIT + 6)))), 1.2),
        Candidate("hidden Clamp 1 unit (L1) = 1.0", run(Clamp(h1, [UNIT], 1.0)), 1.2),
        Candidate("hidden Patch 1 unit (L1)", run(Patch(h1, [UNIT], source)), 1.2),
        Candidate("hidden Scale 1 unit (L0) x2", run(Scale("layers.0.hidden", [UNIT], 2.0))),
        Candidate("hidden Clamp (L1), steps 1000:3000", run(Clamp(h1, [UNIT], 1.0, steps=slice(1000, 3000))), 1.2),
        Candidate("cell Ablate zero, 1 unit (L1)", run(Ablate("layers.1.cell", [UNIT])), 1.2),
        Candidate("cell Clamp 1 unit (L1) = 1.0", run(Clamp("layers.1.cell", [UNIT], 1.0)), 1.2),
        Candidate("cell Clamp (L1) = 2.5, steps 1000:3000",
                  run(Clamp("layers.1.cell", [UNIT], 2.5, steps=slice(1000, 3000))), 1.2),
        Candidate("gate Clamp forget_gate[10] (L0) = 1", run(Clamp("layers.0.forget_gate", [10], 1.0)), 1.2),
        Candidate("gate Clamp input_gate[10] (L1) = 0", run(Clamp("layers.1.input_gate", [10], 0.0)), 1.2),
        Candidate("gate Clamp output_gate (L1) = 0.3", run(Clamp("layers.1.output_gate", [10, 11], 0.3)), 1.2),
        Candidate("cell Scale 1 unit (L1) x0.5 (loop)", run(Scale("layers.1.cell", [UNIT], 0.5)), 3.0),
        Candidate("trace(), every activation", lambda: trace(model, text), table=2),
        Candidate(
            "cell Ablate zero (L1), every activation",
            run(Ablate("layers.1.cell", [UNIT]), names_filter=None),
            table=2,
        ),
        Candidate(
            "cell Clamp (L1) = 1.0, every activation",
            run(Clamp("layers.1.cell", [UNIT], 1.0), names_filter=None),
            table=2,
        ),
    ]
    if args.only:
        keep = {"fused forward + log_softmax", 'trace(names_filter="log_probs")', "trace(), every activation"}
        candidates = [c for c in candidates if c.label in keep or any(s in c.label for s in args.only)]

    for c in candidates:  # warm-up: allocator, kernels, the edited weights' first copies
        c.fn()
        c.times = []
    for _ in range(args.repeats):
        for c in candidates:
            start = time.perf_counter()
            c.fn()
            c.times.append(time.perf_counter() - start)

    by_label = {c.label: c for c in candidates}
    t_fwd = by_label["fused forward + log_softmax"].median()
    t_lp = by_label['trace(names_filter="log_probs")'].median()
    t_all = by_label["trace(), every activation"].median()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"model: {described}")
    print(f"median of {args.repeats} interleaved rounds after one warm-up; ratios of medians")
    print()
    header = f"{'candidate':40} {'ms':>8} {'min ms':>8} {'/ fwd':>6} {'/ trace':>7}  target (vs fwd)"
    print(header)
    print("-" * len(header))
    for c in candidates:
        if c.table != 1:
            continue
        t = c.median()
        verdict = "" if c.target is None else f"<= {c.target:.1f}x: {'met' if t / t_fwd <= c.target else 'MISSED'}"
        print(f"{c.label:40} {t * 1000:8.1f} {min(c.times) * 1000:8.1f} {t / t_fwd:6.2f} {t / t_lp:7.2f}  {verdict}")
    print()
    header = f"{'every activation recorded':40} {'ms':>8} {'min ms':>8} {'/ fwd':>6} {'/ trace()':>9}"
    print(header)
    print("-" * len(header))
    for c in candidates:
        if c.table == 2:
            t = c.median()
            print(f"{c.label:40} {t * 1000:8.1f} {min(c.times) * 1000:8.1f} {t / t_fwd:6.2f} {t / t_all:9.2f}")
    worst = max(candidates, key=lambda c: (max(c.times) - min(c.times)) / c.median())
    spread = (max(worst.times) - min(worst.times)) / worst.median()
    print(f"\nlargest (max - min) / median over the rounds: {spread:.2f} ({worst.label.strip()})")


if __name__ == "__main__":
    main()
