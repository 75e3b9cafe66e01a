"""Inference for people: images in, visualised predictions (PNG) out."""
from .inference import IMAGE_SUFFIXES, build_inferencer, inference, list_images

__all__ = ['IMAGE_SUFFIXES', 'build_inferencer', 'inference', 'list_images']
