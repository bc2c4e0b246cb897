"""Figures of traces and analyses, built with matplotlib's object API (no pyplot, no global backend).

Every function returns a :class:`~matplotlib.figure.Figure`; write it with :func:`save_figure`, or hand it to a
logger (TensorBoard's ``add_figure``).
"""

from lstm_interp.plots.ablation_study import plot_ablation_study
from lstm_interp.plots.brace_study import plot_brace_study
from lstm_interp.plots.cell_heatmap import plot_cell_heatmap
from lstm_interp.plots.cell_text import plot_cell_text
from lstm_interp.plots.class_loss import plot_class_loss
from lstm_interp.plots.error_breakdown import plot_error_breakdown
from lstm_interp.plots.gate_saturation import plot_gate_saturation
from lstm_interp.plots.probe_curve import plot_probe_curve
from lstm_interp.plots.saturation_history import plot_saturation_history
from lstm_interp.plots.save import save_figure
from lstm_interp.plots.series import plot_series
from lstm_interp.plots.steer import plot_steer
from lstm_interp.plots.topk_predictions import plot_topk_predictions
from lstm_interp.plots.unit_contexts import plot_unit_contexts

__all__ = [
    "plot_ablation_study",
    "plot_brace_study",
    "plot_cell_heatmap",
    "plot_cell_text",
    "plot_class_loss",
    "plot_error_breakdown",
    "plot_gate_saturation",
    "plot_probe_curve",
    "plot_saturation_history",
    "plot_series",
    "plot_steer",
    "plot_topk_predictions",
    "plot_unit_contexts",
    "save_figure",
]
