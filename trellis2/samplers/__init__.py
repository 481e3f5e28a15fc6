"""Samplers that turn noise into latents with a flow model."""

from .fast_path import FastPathOptions, FastPathReport, FastPathSetting, FlowRunner, resolve_fast_path
from .flow_euler import (
    ConditionalVelocity,
    FlowEulerGuidanceIntervalSampler,
    SamplerOutput,
    SingleCondition,
    time_grid,
)

SAMPLER_CLASSES: dict[str, type] = {"FlowEulerGuidanceIntervalSampler": FlowEulerGuidanceIntervalSampler}

__all__ = [
    "ConditionalVelocity",
    "FastPathOptions",
    "FastPathReport",
    "FastPathSetting",
    "FlowRunner",
    "resolve_fast_path",
    "FlowEulerGuidanceIntervalSampler",
    "SAMPLER_CLASSES",
    "SamplerOutput",
    "SingleCondition",
    "time_grid",
]
