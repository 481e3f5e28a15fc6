"""Samplers that turn noise into latents with a flow model."""

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
    "FlowEulerGuidanceIntervalSampler",
    "SAMPLER_CLASSES",
    "SamplerOutput",
    "SingleCondition",
    "time_grid",
]
