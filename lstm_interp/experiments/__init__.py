"""Experiments on a trained model that combine generation, interventions and features into one measurement."""

from lstm_interp.experiments.ablation_study import AblationStudy, UnitEffect, ablation_study
from lstm_interp.experiments.steer import SteerResult, SteerStatistic, steer

__all__ = ["AblationStudy", "SteerResult", "SteerStatistic", "UnitEffect", "ablation_study", "steer"]
