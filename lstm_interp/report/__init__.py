"""Reports on traces: a self-contained interactive HTML page (:func:`write_html_report`)."""

from lstm_interp.report.html_report import write_html_report

__all__ = ["write_html_report"]
