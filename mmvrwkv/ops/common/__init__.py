"""What every operator of :mod:`mmvrwkv.ops` shares: loading the compiled
extension, the Python half of a compiled operator (fake implementations,
autograd, device support), input checks and the backend dispatcher."""
from .chunks import default_chunk
from .dispatch import Backend, Dispatcher, in_onnx_export
from .ext_loader import has_op, load_error, load_ext
from .library import (CompiledOp, accumulation_dtype, check_floating_tensors,
                      check_one_device)

__all__ = [
    'Backend', 'Dispatcher', 'in_onnx_export', 'load_ext', 'load_error',
    'has_op', 'CompiledOp', 'accumulation_dtype', 'check_floating_tensors',
    'check_one_device', 'default_chunk'
]
