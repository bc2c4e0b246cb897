"""Causal interventions: ablate, clamp, scale or patch any unit of a recurrent network, exactly, while it runs."""

from lstm_interp.interventions.generate_with_interventions import generate_with_interventions
from lstm_interp.interventions.intervene import intervene
from lstm_interp.interventions.intervention import Ablate, Clamp, Intervention, Patch, Scale
from lstm_interp.interventions.intervention_rules import (
    MAX_SCALE,
    InterventionError,
    check_clamp_value,
    check_scale_factor,
    clamp_range,
)
from lstm_interp.interventions.run_with_interventions import run_with_interventions

__all__ = [
    "MAX_SCALE",
    "Ablate",
    "Clamp",
    "Intervention",
    "InterventionError",
    "Patch",
    "Scale",
    "check_clamp_value",
    "check_scale_factor",
    "clamp_range",
    "generate_with_interventions",
    "intervene",
    "run_with_interventions",
]
