"""Losses, the gradient penalty, LARS and the learning-rate schedule."""
