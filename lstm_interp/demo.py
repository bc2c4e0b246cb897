"""``run_demo``: the first thing to run. Train a small char-LSTM on War and Peace, then show what it learnt.

In a few minutes on a laptop CPU it trains on the bundled book (no download), with Lightning's progress bar,
TensorBoard logs, checkpoints and an :class:`~lstm_interp.callbacks.LSTMActivationMonitor`, saves the network with
``save_pretrained``, measures the validation loss in nats and bits per character and samples at two temperatures.

Each stage is a function that adds what it wrote to :attr:`DemoResult.outputs`; :func:`summary` turns that list into
the closing "where your outputs went" text, so a new stage is one more function call in :func:`run_demo`. The
report stage reads the monitor's own record of its last recording (``monitor.recordings``), never the folder.

``lstm-interp demo`` (:mod:`lstm_interp.cli.demo`) only parses its options into :func:`run_demo`'s keywords and
prints the summary; this module is the demo itself, and sits at the end of the data path with the CLI: it uses the
data module, the network, the callback and the checkpointing, and nothing imports it.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from lstm_interp._io import atomic_write_text
from lstm_interp.callbacks import LSTMActivationMonitor
from lstm_interp.data import CharDataModule
from lstm_interp.demo_findings import (
    SUMMARY_FILE,
    Finding,
    find_demo_cells,
    last_words,
    plot_side_by_side,
    write_summary,
)
from lstm_interp.demo_texts import HELD_OUT_CHARS, PROBE_CHARS, PROBE_SEARCH_CHARS, demo_data, held_out_text, probe_text
from lstm_interp.hub import load_pretrained
from lstm_interp.models.char_lstm_module import CharLSTMModule
from lstm_interp.plots.save import save_figure

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_HIDDEN_SIZE",
    "DEFAULT_LR",
    "DEFAULT_MAX_MINUTES",
    "DEFAULT_MAX_STEPS",
    "DEFAULT_OUTPUT_DIR",
    "DemoOutput",
    "DemoResult",
    "auto_precision",
    "auto_threads",
    "run_demo",
    "summary",
    "torch_threads",
]

DEFAULT_OUTPUT_DIR = "lstm_interp_demo"
# The recipe's history (benchmarks/RESULTS.md, "Demo run" and "The demo's quote-cell rate"): shuffled windows of a
# 2x128 LSTM, batches of 32 at a peak rate of 6e-3, 2,500 steps or 4 minutes, grew a layer-1 quote cell with seed 0
# on one CPU, and not with seeds 1 and 2 (AUC 0.78-0.82).
# Issue 20: on other machines it grew none (best AUC 0.74-0.80), with cells pinned at +-1 (sd of c = 90). Streams
# carried from batch to batch (truncated BPTT, as char-rnn trains) let a unit learn to hold "inside a quotation"
# across batch boundaries; 256 units per layer and batches of 16 (more updates in the time; batches of 32 got too few
# steps on a busy machine) made the cell appear sooner, and 5 minutes gives a CPU without bfloat16 more steps.
# benchmarks/demo_quote_rate.py measures the rate, seeds x precisions (RESULTS.md).
DEFAULT_MAX_STEPS = 2500
DEFAULT_MAX_MINUTES = 5.0
DEFAULT_BATCH_SIZE = 16
DEFAULT_LR = 6e-3
DEFAULT_HIDDEN_SIZE = 256
DEFAULT_STATEFUL = True
SAMPLE_PROMPT = "The "
FEATURES = ("inside_quotes", "position_in_line")


@dataclass
class DemoOutput:
    """One thing the demo wrote: what it is, where, and how to use it."""

    label: str
    path: Path
    hint: str = ""


@dataclass
class DemoResult:
    """What :func:`run_demo` did: the paths it wrote, the final metrics and the samples.

    Attributes:
        output_dir: the folder everything went into.
        model_dir: the ``save_pretrained`` folder (``CharLSTM.from_pretrained(model_dir)`` loads it).
        log_dir: the TensorBoard run folder.
        checkpoint: the last Lightning checkpoint.
        steps: optimiser steps taken (fewer than asked if ``max_minutes`` ran out).
        train_seconds: wall time of training, validation included.
        val_loss: validation loss of the final network, nats per character.
        val_bpc: the same in bits per character.
        precision, threads: the Lightning precision and the CPU thread count used.
        samples: temperature -> generated text.
        findings: the unit shown for each feature, scored on held-out prose (``summary.json``).
        outputs: everything written, in the order the summary lists it.
    """

    output_dir: Path
    model_dir: Path
    log_dir: Path
    checkpoint: Path | None = None
    steps: int = 0
    train_seconds: float = 0.0
    val_loss: float = math.nan
    val_bpc: float = math.nan
    precision: str = ""
    threads: int = 0
    samples: dict[float, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    outputs: list[DemoOutput] = field(default_factory=list)


def run_demo(
    output_dir: str | os.PathLike = DEFAULT_OUTPUT_DIR,
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
    max_minutes: float = DEFAULT_MAX_MINUTES,
    seed: int = 0,
    hidden_size: int = DEFAULT_HIDDEN_SIZE,
    num_layers: int = 2,
    embedding_size: int = 32,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seq_len: int = 100,
    lr: float = DEFAULT_LR,
    stateful: bool = DEFAULT_STATEFUL,
    train_on: str = "book",
    val_every: int = 100,
    val_batches: int = 8,
    sample_length: int = 400,
    temperatures: Sequence[float] = (0.5, 1.0),
    accelerator: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    progress_bar: bool = True,
    cache_dir: str | os.PathLike | None = None,
    echo: Callable[[str], None] | None = print,
) -> DemoResult:
    """Train a small char-LSTM on the bundled War and Peace, save it, evaluate it and sample from it.

    Args:
        output_dir: where the model folder, logs and checkpoints go (created if missing; reruns overwrite).
        max_steps: optimiser steps to train for.
        max_minutes: a time limit on training: Lightning stops there even if ``max_steps`` is not reached.
        seed: seed for initialisation, batch order and the samples.
        hidden_size, num_layers, embedding_size: the network.
        batch_size, seq_len: sequences per batch and characters per sequence.
        lr: peak learning rate of AdamW (cosine schedule with a short warm-up).
        stateful: carry each batch row's state into the next batch (truncated BPTT over continuous streams)
            instead of shuffled windows that each start from zeros.
        train_on: ``"book"`` (all of its training part) or ``"dialogue"`` (only its paragraphs with a quotation);
            validation is the book's last 10% either way (:func:`demo_data`).
        val_every: validate every this many steps (on ``val_batches`` batches; the final number uses them all).
        val_batches: validation batches per check during training.
        sample_length: characters per sample.
        temperatures: one sample per temperature.
        accelerator: Lightning accelerator (``"auto"`` uses a GPU when there is one).
        precision: Lightning precision; ``"auto"`` is :func:`auto_precision`.
        threads: CPU threads for torch while the demo runs; ``None`` is :func:`auto_threads`.
        progress_bar: show Lightning's progress bar.
        cache_dir: where the encoded corpus is cached (default: ``~/.cache/lstm_interp``).
        echo: receives the progress lines as they happen (what is trained, the validation loss, the samples);
            ``None`` keeps quiet. Training minutes are long, so these are not held back for the result.

    Returns:
        A :class:`DemoResult` with the paths, the validation loss and the samples; :func:`summary` lists its outputs.

    Raises:
        ValueError: for a non-positive ``max_steps``, ``max_minutes``, ``val_every``, ``val_batches`` or ``threads``,
            or an unknown ``train_on``.

    Example::

        >>> result = run_demo("my_demo", max_steps=200)  # doctest: +SKIP
        >>> print(summary(result))  # doctest: +SKIP
        >>> CharLSTM.from_pretrained(result.model_dir).generate("The ", 100, seed=0)  # doctest: +SKIP
    """
    for name, value in (("max_steps", max_steps), ("val_every", val_every), ("val_batches", val_batches)):
        if value < 1:
            raise ValueError(f"`{name}` must be >= 1, got {value!r}")
    if not max_minutes > 0:
        raise ValueError(f"`max_minutes` must be > 0, got {max_minutes!r}")
    if threads is not None and threads < 1:
        raise ValueError(f"`threads` must be >= 1 or None, got {threads!r}")
    if train_on not in ("book", "dialogue"):
        raise ValueError(f"`train_on` must be 'book' or 'dialogue', got {train_on!r}")
    say = echo if echo is not None else _quiet
    out = Path(output_dir).resolve()  # absolute, like the checkpoint paths Lightning reports
    _make_output_dir(out)
    precision = auto_precision(accelerator) if precision == "auto" else precision
    pl.seed_everything(seed, workers=True, verbose=False)

    data = demo_data(train_on, batch_size=batch_size, seq_len=seq_len, stateful=stateful, cache_dir=cache_dir)
    module = CharLSTMModule(
        vocab=data.vocab.chars,
        num_layers=num_layers,
        hidden_size=hidden_size,
        embedding_size=embedding_size,
        lr=lr,
        lr_schedule="cosine",
        warmup_steps=min(50, max_steps // 10),
    )
    logger = TensorBoardLogger(save_dir=str(out), name="logs")
    # A stretch of the first chapters with many short quotations and line breaks, where the paper's quote and line
    # cells show up. The report and the cell-text figure open on the units that best track those two features.
    probe = probe_text(data.corpus.text(0, PROBE_SEARCH_CHARS), PROBE_CHARS)
    monitor = LSTMActivationMonitor(probe_texts=[probe], every_n_train_steps=500, features=list(FEATURES))
    # Fixed names, overwritten by a rerun, so that the summary's paths stay the same from one run to the next.
    checkpoint = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename="best",
        monitor="val/loss",
        save_last=True,
        enable_version_counter=False,
    )
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,  # type: ignore[arg-type]
        max_steps=max_steps,
        max_time=timedelta(minutes=max_minutes),
        val_check_interval=min(val_every, max_steps),
        check_val_every_n_epoch=None,  # count `val_check_interval` in steps across epochs
        limit_val_batches=val_batches,
        gradient_clip_val=5.0,
        log_every_n_steps=10,
        logger=logger,
        callbacks=[checkpoint, monitor],
        enable_progress_bar=progress_bar,
        default_root_dir=str(out),
    )
    result = DemoResult(output_dir=out, model_dir=out / "model", log_dir=Path(logger.log_dir), precision=precision)

    result.threads = threads if threads is not None else auto_threads()
    with torch_threads(result.threads):
        say(f"Training a {num_layers}-layer LSTM (hidden size {hidden_size}) on War and Peace: {_size(data)},")
        say(
            f"for {max_steps} steps or {max_minutes:g} minutes, whichever comes first "
            f"({precision} precision, {result.threads} CPU thread(s)).\n"
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            # The bundled corpus is memory-mapped and read in the main process; workers would not make it faster.
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            trainer.fit(module, datamodule=data)
        result.train_seconds = time.perf_counter() - start
        result.steps = trainer.global_step

        _save_model(module, checkpoint, result)
        _report(monitor, result)
        _evaluate(module, data, result, accelerator=accelerator, precision=precision, progress_bar=progress_bar,
                  say=say)
        _sample(module, result, temperatures=temperatures, length=sample_length, seed=seed, say=say)
        _findings(module, data, result, probe, say=say)
    return result


def _make_output_dir(out: Path) -> None:
    """Create the output folder; a folder the demo creates gets a ``.gitignore`` of ``*``, as pytest's cache does,
    so that running the demo inside a git checkout leaves nothing untracked there. An existing ``.gitignore`` (the
    user's) is left alone."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    if created:
        atomic_write_text(out / ".gitignore", "# Written by `lstm-interp demo`: its outputs stay out of git.\n*\n")


def _findings(module: CharLSTMModule, data: CharDataModule, result: DemoResult, probe: str, *,
              say: Callable[[str], None]) -> None:
    """Name the best unit of each feature on held-out prose, honestly; write ``summary.json``."""
    network = module.network.eval()
    result.findings, ours, theirs = find_demo_cells(
        network, result.model_dir, held_out_text(data), probe, FEATURES, load_pretrained=load_pretrained
    )
    say(f"\nWhat it learnt, on {HELD_OUT_CHARS:,} held-out characters (find_cells, visible units first):")
    for line in last_words(result.findings):
        say(line)
    pretrained = [f for f in result.findings if f.source == "pretrained"]
    if pretrained:
        own = next(f for f in result.findings if f.feature == pretrained[0].feature and f.source == "trained")
        figure = result.output_dir / "quote_cell_beside_pretrained.png"
        save_figure(plot_side_by_side(ours, theirs, own, pretrained[0]), figure)
        result.outputs.append(DemoOutput("figure", figure, "this run's best quote unit beside the pretrained cell"))
    path = write_summary(
        result.output_dir / SUMMARY_FILE,
        steps=result.steps,
        precision=result.precision,
        val_loss=result.val_loss,
        findings=result.findings,
    )
    result.outputs.append(DemoOutput("summary", path, "steps, precision, loss and the unit shown for each feature"))


def auto_precision(accelerator: str = "auto") -> str:
    """``"bf16-mixed"`` where bfloat16 is native to the hardware that will train, else ``"32-true"``.

    On a CPU with AVX512-BF16 a training step of the demo model costs about 0.6x the CPU time of float32 (measured
    at hidden sizes 128 to 512); on a CPU without it bfloat16 is emulated and several times slower.
    """
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    if accelerator not in ("auto", "cpu"):
        return "32-true"
    # Private helpers, hence the getattr: a torch without them gets the safe choice.
    native = [
        getattr(torch.cpu, name, lambda: False) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    return "bf16-mixed" if any(check() for check in native) else "32-true"


def auto_threads() -> int:
    """torch's default thread count, less the cores other processes keep busy (1-minute load average); at least 1.

    Each time step of an LSTM runs a few small kernels whose threads meet at a barrier; one thread that shares its
    core with another busy process holds up the rest. On a 2-core machine with other jobs running, 2 threads were
    measured 3-10x slower per step than 1, while on an idle one they were about 1.5x faster.
    """
    default = torch.get_num_threads()
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows)
        return default
    idle = (os.cpu_count() or default) - math.floor(busy + 0.5)
    return max(1, min(default, idle))


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[int]:
    """Run the body with ``torch.set_num_threads(count)``, restoring the previous count afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield count
    finally:
        torch.set_num_threads(previous)


def _size(data: CharDataModule) -> str:
    return f"{len(data.corpus):,} characters, {len(data.vocab)} distinct"


def _quiet(line: str) -> None:
    """An ``echo`` that drops every line."""


def _report(monitor: LSTMActivationMonitor, result: DemoResult) -> None:
    """Point the summary at the activation monitor's last recording: its HTML report and figures.

    The monitor's index entry says where it wrote (``dir``) and which files (``files``); a report or figure that
    failed to draw is simply not listed there, so nothing here has to guess file names.
    """
    if not monitor.recordings:
        return
    last = max(monitor.recordings, key=lambda entry: entry["step"])
    folder, files = Path(last["dir"]), last["files"]
    if files.get("html"):
        hint = "open in a browser: pick layer, quantity and unit"
        result.outputs.append(DemoOutput("activation report", folder / files["html"], hint))
    for kind, name in files.get("figures", {}).items():
        result.outputs.append(DemoOutput("figure", folder / name, kind.replace("_", " ")))


def _save_model(module: CharLSTMModule, checkpoint: ModelCheckpoint, result: DemoResult) -> None:
    module.save_pretrained(str(result.model_dir))
    result.outputs.append(
        DemoOutput("model", result.model_dir, f"lstm-interp sample {result.model_dir} --prompt '{SAMPLE_PROMPT}'")
    )
    result.outputs.append(DemoOutput("logs", result.log_dir, f"tensorboard --logdir {result.log_dir.parent}"))
    if checkpoint.last_model_path:
        result.checkpoint = Path(checkpoint.last_model_path)
        result.outputs.append(DemoOutput("checkpoint", result.checkpoint, "resume or evaluate with --ckpt_path"))
    if checkpoint.best_model_path and checkpoint.best_model_path != checkpoint.last_model_path:
        result.outputs.append(DemoOutput("best checkpoint", Path(checkpoint.best_model_path), "lowest val/loss"))


def _evaluate(
    module: CharLSTMModule,
    data: CharDataModule,
    result: DemoResult,
    *,
    accelerator: str,
    precision: str,
    progress_bar: bool,
    say: Callable[[str], None],
) -> None:
    # A trainer of its own: the training one only looks at a few validation batches, this one at all of them,
    # and logs nothing so that the TensorBoard curves stay those of training.
    evaluator = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,  # type: ignore[arg-type]
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        metrics = evaluator.validate(module, datamodule=data, verbose=False)
    if metrics:
        result.val_loss = float(metrics[0]["val/loss"])
        result.val_bpc = float(metrics[0]["val/bpc"])
    say(
        f"\nTrained {result.steps} steps in {result.train_seconds / 60:.1f} min. Validation loss: "
        f"{result.val_loss:.3f} nats per character = {result.val_bpc:.3f} bits per character "
        f"(a uniform guess over {len(data.vocab)} characters: {math.log2(len(data.vocab)):.2f} bits)."
    )


def _sample(
    module: CharLSTMModule,
    result: DemoResult,
    *,
    temperatures: Sequence[float],
    length: int,
    seed: int,
    say: Callable[[str], None],
) -> None:
    prompt = SAMPLE_PROMPT if all(c in module.vocab for c in SAMPLE_PROMPT) else module.vocab.chars[0]
    for temp in temperatures:
        text = module.generate(prompt, length, temperature=temp, seed=seed)
        result.samples[temp] = text
        note = "conservative" if temp < 1 else "as trained" if temp == 1 else "adventurous"
        say(f"\n----- sample at temperature {temp:g} ({note}) -----\n{text}")


def summary(result: DemoResult) -> str:
    """The closing "where your outputs went" list, built from :attr:`DemoResult.outputs`."""
    width = max((len(output.label) for output in result.outputs), default=0)
    lines = ["", f"Done. Your outputs are in {result.output_dir}:"]
    for output in result.outputs:
        lines.append(f"  {output.label:<{width}}  {output.path}")
        if output.hint:
            lines.append(f"  {'':<{width}}    {output.hint}")
    lines.append(f"Load the model in Python: CharLSTM.from_pretrained({str(result.model_dir)!r})")
    if result.findings:  # the last words: what the run grew, plainly
        lines += ["", f"What it learnt (on {HELD_OUT_CHARS:,} held-out characters):", *last_words(result.findings)]
    return "\n".join(lines)
