"""mmengine FLOP-counter handles for this package's operators.

mmengine's ``FlopAnalyzer`` (``get_model_complexity_info``, and so the mm
tools' get_flops) counts the operators of a jit trace by name, from the
table ``mmengine.analysis.complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS``
that every new analyzer copies. Our compiled operators appear there as
``mmvrwkv::<name>`` and would count zero. :func:`register_flop_handles` adds
a handle for each: Bi-WKV and Bi-WKV6 as the paper counts the operator
(mmengine itself counts VRWKV6's low-rank matmuls), the deformable sampling
as mmengine counts its reference (``aten::grid_sampler``: 4 per sampled
value), so that a CPU trace (reference) and a GPU trace (mmcv's kernel)
agree.

The models that call these operators register the handles when they are
built (``VisionRWKVBase``, ``DeformableAttention``), so any analysis of such
a model in any process, ``mim run mmpretrain get_flops`` included, counts
them; ``import mmvrwkv`` changes nothing.
"""
import warnings
from typing import List

# official classification/get_flops_backbone.py: Bi-WKV is 29 FLOPs per
# token-channel, Bi-WKV6 (vrwkv6_flops) 7 * head_size + 17
WKV_FLOPS_PER_TOKEN_CHANNEL = 29
WKV6_FLOPS_PER_HEAD_CHANNEL = 7
WKV6_FLOPS_PER_TOKEN_CHANNEL_EXTRA = 17


def _shape(value) -> List[int]:
    from mmengine.analysis.jit_handles import get_shape
    shape = get_shape(value)
    if shape is None:
        raise ValueError('the FLOPs of an mmvrwkv operator need the traced '
                         'shapes of its inputs')
    return shape


def bi_wkv_flop_jit(inputs: list, outputs: list) -> int:
    """``mmvrwkv::bi_wkv(w, u, k, v)``: 29 per element of k (B, T, C)."""
    B, T, C = _shape(inputs[2])
    return WKV_FLOPS_PER_TOKEN_CHANNEL * B * T * C


def bi_wkv6_flop_jit(inputs: list, outputs: list) -> int:
    """``mmvrwkv::bi_wkv6(r, k, v, w, u)``: ``7 * head_size + 17`` per
    element of r (B, T, C), u being (heads, head_size)."""
    B, T, C = _shape(inputs[0])
    head_size = _shape(inputs[4])[-1]
    return B * T * C * (WKV6_FLOPS_PER_HEAD_CHANNEL * head_size +
                        WKV6_FLOPS_PER_TOKEN_CHANNEL_EXTRA)


def ms_deform_attn_flop_jit(inputs: list, outputs: list) -> int:
    """``mmvrwkv::ms_deform_attn(value, shapes, locations, weights)``: 4
    per sampled value (bilinear), as mmengine counts ``grid_sampler``."""
    head_dims = _shape(inputs[0])[-1]
    B, Q, heads, levels, points, _ = _shape(inputs[2])
    return 4 * B * Q * heads * levels * points * head_dims


def output_activation_jit(inputs: list, outputs: list) -> int:
    """Activations of Bi-WKV / Bi-WKV6: their output's elements, as
    mmengine counts those of matmuls and einsums."""
    from mmengine.analysis.jit_handles import prod
    return prod(_shape(outputs[0]))


FLOP_HANDLES = {
    'mmvrwkv::bi_wkv': bi_wkv_flop_jit,
    'mmvrwkv::bi_wkv6': bi_wkv6_flop_jit,
    'mmvrwkv::ms_deform_attn': ms_deform_attn_flop_jit,
}
# ms_deform_attn has none: mmengine counts no activation for its reference
# (grid_sampler), and a GPU trace should count what a CPU trace does
ACTIVATION_HANDLES = {
    'mmvrwkv::bi_wkv': output_activation_jit,
    'mmvrwkv::bi_wkv6': output_activation_jit,
}


def register_flop_handles() -> List[str]:
    """Add :data:`FLOP_HANDLES` to mmengine's default FLOP table and
    :data:`ACTIVATION_HANDLES` to its activation table, so that analyzers
    made afterwards count our operators.

    Additive: only the ``mmvrwkv::`` names are added, which no other
    model's trace contains; no other entry changes, a name that already has
    another handle keeps it (with a warning), and calling it again does
    nothing. Where mmengine has no such table (another version), nothing
    happens.

    Returns:
        list[str]: the names this call added to the FLOP table.
    """
    try:
        from mmengine.analysis import complexity_analysis as ca
        tables = ((ca._DEFAULT_SUPPORTED_FLOP_OPS, FLOP_HANDLES),
                  (ca._DEFAULT_SUPPORTED_ACT_OPS, ACTIVATION_HANDLES))
    except (ImportError, AttributeError):
        return []
    added = []
    for table, handles in tables:
        for name, handle in handles.items():
            if name not in table:
                table[name] = handle
                if handles is FLOP_HANDLES:
                    added.append(name)
            elif table[name] is not handle:
                warnings.warn(
                    f'mmengine already counts {name} with {table[name]!r}; '
                    'mmvrwkv leaves that handle in place')
    return added
