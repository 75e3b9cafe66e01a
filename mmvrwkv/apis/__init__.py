"""What people and tools call: build a config's model, run inference and
save pictures, count FLOPs, convert official checkpoints, export to
ONNX."""
from .export import (ExportError, TensorForward, build_export_model,
                     compare_with_onnxruntime, export_onnx)
from .flops import count_flops
from .inference import IMAGE_SUFFIXES, build_inferencer, inference, list_images
from .mae import reconstruct, save_reconstructions
from .model_builder import build_model, enter_scope, load_config
from .official_checkpoint import compare_shapes, convert_official

__all__ = [
    'IMAGE_SUFFIXES', 'build_inferencer', 'inference', 'list_images',
    'build_model', 'enter_scope', 'load_config', 'count_flops',
    'compare_shapes', 'convert_official', 'ExportError', 'TensorForward',
    'build_export_model', 'export_onnx', 'compare_with_onnxruntime',
    'reconstruct', 'save_reconstructions'
]
