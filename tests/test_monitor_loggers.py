"""LSTMActivationMonitor with real loggers, each read back with its own library: TensorBoard (event files), CSV
(``metrics.csv``), W&B offline (the run's ``.wandb`` log and media files) and MLflow with a local file store.

Every test trains the same tiny CharLSTMModule for 4 steps with recordings at steps 2 and 4, then checks that the
logger holds the saturation scalars the monitor put in its ``index.json`` at those steps, and the cell-text figure
pixel for pixel as the monitor wrote it to its PNG file (a real figure: plausible size, not blank).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import mlflow
import numpy as np
import PIL.Image
import pytest
import torch
import wandb
from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from lstm_interp.callbacks import LSTMActivationMonitor
from lstm_interp.callbacks._recording_writer import log_mlflow_image
from mlflow import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from wandb.proto import wandb_internal_pb2
from wandb.sdk.internal.datastore import DataStore

from lstm_interp.data import CharDataModule
from lstm_interp.models.char_lstm_module import CharLSTMModule

TEXT = "the cat sat on the mat.\nthe dog sat on the log.\n" * 20
VOCAB = "".join(sorted(set(TEXT)))  # CharVocab.from_text's order
PROBE = "the dog sat on the mat.\n"
STEPS = [2, 4]  # every_n_train_steps=2 in a fit of max_steps=4
KINDS = {"cell_text", "gate_saturation", "topk_predictions", "cell_heatmap", "saturation_history"}
SCALARS = ["layers.0/forget_gate/left_saturated", "layers.1/cell/std"]  # as logged: "lstm_interp/<name>"

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py



def fit(tmp_path: Path, logger: Logger) -> Path:
    """Train with a monitor logging to ``logger``; returns the monitor's folder (the one holding ``index.json``)."""
    torch.manual_seed(0)
    module = CharLSTMModule(vocab=VOCAB, hidden_size=8, embedding_size=4, lr_schedule="constant")
    data = CharDataModule(text=TEXT, vocab=VOCAB, batch_size=4, seq_len=16, cache_dir=str(tmp_path / "cache"))
    monitor = LSTMActivationMonitor(probe_texts=[PROBE], every_n_train_steps=2, html=False)
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_steps=4,
        limit_train_batches=4,
        limit_val_batches=0,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[monitor],
    )
    trainer.fit(module, datamodule=data)
    (folder,) = {path.parent for path in tmp_path.rglob("index.json")}
    return folder


def check_scalars(logged: dict[str, dict[int, float]], folder: Path) -> None:
    """``logged[name][step]`` are the values of the monitor's index at every recorded step."""
    recordings = json.loads((folder / "index.json").read_text())["recordings"]
    assert [r["step"] for r in recordings] == STEPS
    expected = {name: {r["step"]: r["summary"][name] for r in recordings} for name in SCALARS}
    assert logged == {name: pytest.approx(values, rel=1e-6) for name, values in expected.items()}
    assert all(0 <= v <= 1 for v in logged["layers.0/forget_gate/left_saturated"].values())
    assert all(v > 0 for v in logged["layers.1/cell/std"].values())


def rgb_of(image: PIL.Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def check_figure(rgb: np.ndarray) -> None:
    """A rendered matplotlib figure: a few hundred pixels each way, many colours, not a blank page."""
    height, width, channels = rgb.shape
    assert channels == 3 and rgb.dtype == np.uint8
    assert 200 <= height <= 4000 and 200 <= width <= 4000, rgb.shape
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 20
    assert 0.01 < (rgb < 250).any(axis=2).mean() < 0.99  # some ink, some paper


def check_cell_text(images: dict[int, np.ndarray], folder: Path) -> None:
    """``images[step]`` is the cell-text figure of each recording, exactly the pixels of the monitor's PNG file."""
    assert sorted(images) == STEPS
    for step, rgb in images.items():
        check_figure(rgb)
        with PIL.Image.open(folder / f"step_{step}_cell_text.png") as png:
            np.testing.assert_array_equal(rgb, rgb_of(png))


# ------------------------------------------------------------------------------------------------- TensorBoard
def test_tensorboard_images_and_scalars(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="tb")
    folder = fit(tmp_path, logger)

    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert {f"lstm_interp/{kind}" for kind in KINDS} <= set(events.Tags()["images"])
    images = {}
    for event in events.Images("lstm_interp/cell_text"):
        with PIL.Image.open(io.BytesIO(event.encoded_image_string)) as image:
            images[event.step] = rgb_of(image)
        assert images[event.step].shape[:2] == (event.height, event.width)
    check_cell_text(images, folder)
    check_scalars({name: {e.step: e.value for e in events.Scalars(f"lstm_interp/{name}")} for name in SCALARS}, folder)


# ------------------------------------------------------------------------------------------------- CSV
def test_csv_scalars_and_png_only_figures_with_one_warning(tmp_path):
    logger = CSVLogger(tmp_path, name="csv")
    with pytest.warns(UserWarning, match="CSVLogger takes neither") as caught:
        folder = fit(tmp_path, logger)
    messages = [str(w.message) for w in caught if "CSVLogger" in str(w.message)]
    assert len(messages) == 1  # 2 recordings of 5 figures: one warning
    assert repr(str(folder)) in messages[0] and folder == Path(logger.log_dir) / "lstm_interp"

    with open(Path(logger.log_dir) / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    scalars = {
        name: {int(row["step"]): float(row[f"lstm_interp/{name}"]) for row in rows if row[f"lstm_interp/{name}"]}
        for name in SCALARS
    }
    check_scalars(scalars, folder)
    for step in STEPS:
        for kind in KINDS:
            with PIL.Image.open(folder / f"step_{step}_{kind}.png") as png:
                check_figure(rgb_of(png))


# ------------------------------------------------------------------------------------------------- W&B offline
@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B with no network, no account and nothing written outside ``tmp_path``; the run and service always end."""
    settings = {
        "WANDB_MODE": "offline",  # WandbLogger(offline=True) sets it too, and never unsets it: monkeypatch does
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(tmp_path),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
        "WANDB_CONSOLE": "off",  # leave stdout to pytest
        "WANDB_DISABLE_GIT": "true",
        "WANDB_DISABLE_CODE": "true",
        "WANDB_ERROR_REPORTING": "false",  # no Sentry
        "WANDB__DISABLE_STATS": "true",  # no system-metrics sampling
        "WANDB__DISABLE_MACHINE_INFO": "true",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    for name in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_ENTITY", "WANDB_PROJECT", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield
    finally:
        wandb.finish()  # a failed test must not leave its run open for the next WandbLogger to reuse
        wandb.teardown()  # nor its service process running (both do nothing when the test got there first)


def wandb_history(sync_file: str) -> list[dict[str, Any]]:
    """The history rows of a W&B run, read from its ``.wandb`` transaction log with wandb's own reader and protobuf.

    Keys are the logged names; a media value's fields are ``<name>/<field>`` (``lstm_interp/cell_text/filenames``).
    """
    store = DataStore()
    store.open_for_scan(sync_file)
    rows = []
    try:
        while (data := store.scan_data()) is not None:
            record = wandb_internal_pb2.Record()
            record.ParseFromString(data)
            if record.WhichOneof("record_type") == "history":
                rows.append(
                    {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
                )
    finally:
        store.close()
    return rows


def test_wandb_offline_run_holds_images_and_scalars(tmp_path, offline_wandb):
    logger = WandbLogger(offline=True, save_dir=str(tmp_path), project="lstm-interp")
    folder = fit(tmp_path, logger)
    run = logger.experiment
    files_dir, sync_file = Path(run.settings.files_dir), run.settings.sync_file
    run.finish()
    # `finish` can return before the service process has written the run's `.wandb` log (at times only its 7-byte
    # header is there): `teardown` waits for that process to end, and it ends once the log is written and closed.
    wandb.teardown()
    assert Path(sync_file).parent == files_dir.parent and files_dir.is_relative_to(tmp_path / "wandb")

    rows = wandb_history(sync_file)
    scalars = {
        name: {row["trainer/global_step"]: row[f"lstm_interp/{name}"] for row in rows if f"lstm_interp/{name}" in row}
        for name in SCALARS
    }
    check_scalars(scalars, folder)
    media = {key.removesuffix("/_type") for row in rows for key, value in row.items() if value == "images/separated"}
    assert media >= {f"lstm_interp/{kind}" for kind in KINDS}
    images = {}
    for row in rows:
        if "lstm_interp/cell_text/filenames" in row:
            (name,) = row["lstm_interp/cell_text/filenames"]
            assert name.startswith("media/images/lstm_interp/cell_text")
            with PIL.Image.open(files_dir / name) as image:
                images[row["trainer/global_step"]] = rgb_of(image)
            shape = (row["lstm_interp/cell_text/height"], row["lstm_interp/cell_text/width"])
            assert images[row["trainer/global_step"]].shape[:2] == shape
    check_cell_text(images, folder)


# ------------------------------------------------------------------------------------------------- MLflow
@pytest.fixture
def mlflow_file_store(tmp_path, monkeypatch):
    """A ``file:`` tracking URI under ``tmp_path``; MLflow's global tracking URI is reset afterwards."""
    uri = f"file:{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses its file store (maintenance mode) else
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # MLFlowLogger sets it (mlflow.set_tracking_uri): undone after
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(None)


def mlflow_image_key_step(path: str) -> tuple[str, int]:
    """Key and step of an image logged with ``MlflowClient.log_image(key=, step=)``, from the artifact name that
    MLflow gives it (``images/<key, '/' as '~'>+step+<step>+timestamp+<ms>+<uuid>.png``; MLflow has no reader)."""
    key, rest = Path(path).stem.split("+step+")
    return key.replace("~", "/"), int(rest.split("+")[0])


def test_mlflow_file_store_holds_image_artifacts_and_metrics(tmp_path, mlflow_file_store):
    logger = MLFlowLogger(experiment_name="lstm-interp", tracking_uri=mlflow_file_store)
    folder = fit(tmp_path, logger)

    client = MlflowClient(tracking_uri=mlflow_file_store)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.loggedImages"] == "True"
    history = {name: client.get_metric_history(run.info.run_id, f"lstm_interp/{name}") for name in SCALARS}
    check_scalars({name: {m.step: m.value for m in metrics} for name, metrics in history.items()}, folder)

    pngs = [a.path for a in client.list_artifacts(run.info.run_id, "images") if a.path.endswith(".png")]
    logged = [mlflow_image_key_step(path) for path in pngs]
    assert sorted(logged) == sorted((f"lstm_interp/{kind}", step) for kind in KINDS for step in STEPS)
    images = {}
    for path, (key, step) in zip(pngs, logged, strict=True):
        if key == "lstm_interp/cell_text":
            images[step] = rgb_of(mlflow.artifacts.load_image(f"{run.info.artifact_uri}/{path}"))
    check_cell_text(images, folder)


def test_mlflow_without_image_keys_gets_one_artifact_file_per_step():
    """An older MLflow, whose ``log_image`` takes no ``key=``/``step=``, gets ``<tag>/step_<step>.png``."""
    calls = []

    class OldClient:
        def log_image(self, run_id: str, image: np.ndarray, artifact_file: str) -> None:
            calls.append((run_id, image.shape, artifact_file))

    rgb = np.zeros((4, 6, 3), np.uint8)
    log_mlflow_image(SimpleNamespace(experiment=OldClient(), run_id="r1"), "run+1/cell_text", rgb, 3)
    assert calls == [("r1", (4, 6, 3), "run1/cell_text/step_3.png")]  # '+' is no character of MLflow names
