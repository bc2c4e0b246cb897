"""Reports on traces: a self-contained interactive HTML page (:func:`write_html_report`), and the whole analysis
folder of a text (:func:`run_analysis`: cells, figures, gate saturation, n-gram comparison, page), and the unit
atlas's folder (:func:`run_atlas`, :func:`write_atlas_folder`: an index of every unit and a page each), and the
folders of the experiments (:func:`run_ablation`, :func:`run_steer`, :func:`run_probes`).

The names are imported on first use: the live explorer reads the atlas's pages from here, and should not wait for
matplotlib, which the analysis folder's figures need (a third of a second of its start-up).
"""

from lstm_interp._lazy import lazy_exports

_EXPORTS = {
    "best_feature_match": "lstm_interp.report.html_report",
    "ranked_feature_matches": "lstm_interp.report.html_report",
    "run_ablation": "lstm_interp.report.experiment_runs",
    "run_analysis": "lstm_interp.report.run_analysis",
    "run_atlas": "lstm_interp.report.atlas_pages",
    "run_probes": "lstm_interp.report.experiment_runs",
    "run_steer": "lstm_interp.report.experiment_runs",
    "write_atlas_folder": "lstm_interp.report.atlas_pages",
    "write_html_report": "lstm_interp.report.html_report",
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
__all__ = sorted(_EXPORTS)
