"""Networks of SceneLeapUltra: point encoders, grasp-set denoisers, objectives, schedulers,
the denoising loop, grasp losses and the :class:`GraspGenerator` that ties them together.

    from sceneleap_core.models import GraspGenerator, GeneratorConfig, build_generator, GENERATOR_PRESETS
    model = build_generator("dit_s")
    out = model.training_loss(points, grasps)          # points (B, N, 3), grasps (B, G, 25)
    grasps = model.sample(points, num_grasps=32, steps=10, sampler="ddim")
"""

from sceneleap_core.models.denoisers import DENOISERS, GraspDiT, GraspUNet, SceneCache
from sceneleap_core.models.denoising_loop import DenoisingLoop, cfg_combine
from sceneleap_core.models.encoders import ENCODERS, LiteEncoder, PointNet2Encoder, PointTransformerEncoder
from sceneleap_core.models.generator import (
    GENERATOR_PRESETS,
    GeneratorConfig,
    GraspGenerator,
    build_denoiser,
    build_encoder,
    build_generator,
    build_objective,
)
from sceneleap_core.models.objectives import OBJECTIVES, CVAEObjective, DiffusionObjective, FlowMatchingObjective
from sceneleap_core.models.schedulers import (
    SCHEDULERS,
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    FlowEulerScheduler,
    FlowHeunScheduler,
    StepOutput,
)

__all__ = [
    "DENOISERS",
    "ENCODERS",
    "GENERATOR_PRESETS",
    "OBJECTIVES",
    "SCHEDULERS",
    "CVAEObjective",
    "DDIMScheduler",
    "DDPMScheduler",
    "DPMSolverMultistepScheduler",
    "DenoisingLoop",
    "DiffusionObjective",
    "FlowEulerScheduler",
    "FlowHeunScheduler",
    "FlowMatchingObjective",
    "GeneratorConfig",
    "GraspDiT",
    "GraspGenerator",
    "GraspUNet",
    "LiteEncoder",
    "PointNet2Encoder",
    "PointTransformerEncoder",
    "SceneCache",
    "StepOutput",
    "build_denoiser",
    "build_encoder",
    "build_generator",
    "build_objective",
    "cfg_combine",
]
