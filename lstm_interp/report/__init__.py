"""Reports on traces: a self-contained interactive HTML page (:func:`write_html_report`), and the whole analysis
folder of a text (:func:`run_analysis`: cells, figures, gate saturation, n-gram comparison, page), and the unit
atlas's folder (:func:`run_atlas`, :func:`write_atlas_folder`: an index of every unit and a page each)."""

from lstm_interp.report.atlas_pages import run_atlas, write_atlas_folder
from lstm_interp.report.html_report import best_feature_match, ranked_feature_matches, write_html_report
from lstm_interp.report.run_analysis import run_analysis

__all__ = [
    "best_feature_match",
    "ranked_feature_matches",
    "run_analysis",
    "run_atlas",
    "write_atlas_folder",
    "write_html_report",
]
