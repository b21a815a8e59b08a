"""Encoders and the projection head (spec section 4)."""

from models.projection import ProjectionHead
from models.resnet import ARCHITECTURES, STEMS, ResNetEncoder, representation_dim

__all__ = ["ARCHITECTURES", "STEMS", "ProjectionHead", "ResNetEncoder", "representation_dim"]
