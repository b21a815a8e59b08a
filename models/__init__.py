"""The encoders, the projection head and the method's loss and penalty (spec sections 4-5)."""

from models.invclr import PENALTY_SAMPLES, gradient_penalty, nt_xent, rademacher
from models.projection import ProjectionHead
from models.resnet import ARCHITECTURES, STEMS, ResNetEncoder

__all__ = [
    "ARCHITECTURES",
    "PENALTY_SAMPLES",
    "STEMS",
    "ProjectionHead",
    "ResNetEncoder",
    "gradient_penalty",
    "nt_xent",
    "rademacher",
]
