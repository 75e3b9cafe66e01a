"""MAE's initialisation of linear layers and LayerNorms."""
from torch import nn


def mae_linear_init_(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every ``nn.Linear`` in
    ``module``, unit weights and zero biases for every ``nn.LayerNorm``
    (MAE's ``_init_weights``, which the official VRWKV MAE keeps)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
