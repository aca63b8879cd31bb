"""The π-Flow policy math in torch: GM and DX policies, rollout, the FlowMapSDE schedule and the
few-step sampling loop, mirroring ``@piflow/policy`` (policy/src) and held to the same golden cases.
Float32 (serving) and float64 (reference), on whatever device the tensors are on.
"""

from .dx import DX_DEFAULT_EPS, DX_MODES, DxPolicy
from .gm import GM_DEFAULT_EPS, GmPolicy
from .rollout import SUBSTEP_RULES, RolloutResult, rollout, substep_count
from .sample import DxOptions, build_segment_policy, sample_loop
from .schedule import DynamicShift, Schedule, ScheduleStep, auto_temperature, build_schedule
from .shift import unwarp, warp
from .types import DxOutput, GmOutput, PolicyOutput

__all__ = [
    "DX_DEFAULT_EPS",
    "DX_MODES",
    "GM_DEFAULT_EPS",
    "SUBSTEP_RULES",
    "DxOptions",
    "DxOutput",
    "DxPolicy",
    "DynamicShift",
    "GmOutput",
    "GmPolicy",
    "PolicyOutput",
    "RolloutResult",
    "Schedule",
    "ScheduleStep",
    "auto_temperature",
    "build_schedule",
    "build_segment_policy",
    "rollout",
    "sample_loop",
    "substep_count",
    "unwarp",
    "warp",
]
