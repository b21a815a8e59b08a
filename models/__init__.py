"""Encoders and the projection head (spec section 4)."""

from models.projection import ProjectionHead
from models.resnet import ARCHITECTURES, STEMS, ResNetEncoder

__all__ = ["ARCHITECTURES", "STEMS", "ProjectionHead", "ResNetEncoder"]
