"""Reports on traces: a self-contained interactive HTML page (:func:`write_html_report`), and the whole analysis
folder of a text (:func:`run_analysis`: cells, figures, gate saturation, n-gram comparison, page)."""

from lstm_interp.report.html_report import best_feature_match, ranked_feature_matches, write_html_report
from lstm_interp.report.run_analysis import run_analysis

__all__ = ["best_feature_match", "ranked_feature_matches", "run_analysis", "write_html_report"]
