"""Causal interventions: ablate, clamp, scale or patch any unit of a recurrent network, exactly, while it runs."""

from lstm_interp.interventions.intervention import Ablate, Clamp, Intervention, InterventionError, Patch, Scale
from lstm_interp.interventions.run_with_interventions import run_with_interventions

__all__ = ["Ablate", "Clamp", "Intervention", "InterventionError", "Patch", "Scale", "run_with_interventions"]
