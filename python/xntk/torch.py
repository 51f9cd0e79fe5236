"""PyTorch modules for the xntk blocks that torch.nn has no module for: `Residual`.

Importing this module imports torch; `import xntk` alone does not.
"""

from __future__ import annotations

from typing import Iterable, Optional, Union

import torch
import torch.nn as nn

__all__ = ["Residual"]

ModuleOrLayers = Union[nn.Module, Iterable[nn.Module]]


def _sequential(layers: ModuleOrLayers) -> nn.Sequential:
    if isinstance(layers, nn.Sequential):
        return layers
    if isinstance(layers, nn.Module):
        return nn.Sequential(layers)
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """A residual block y = body(x) + shortcut(x), as xntk's {"type": "residual"}: `body` and `shortcut` are
    nn.Sequential children (a single module or a list of modules is wrapped in one), so that the state_dict
    keys are xntk's parameter names ("3.body.0.weight", "3.shortcut.0.bias"). shortcut=None is the identity.
    """

    def __init__(self, body: ModuleOrLayers, shortcut: Optional[ModuleOrLayers] = None) -> None:
        super().__init__()
        self.body = _sequential(body)
        self.shortcut = _sequential(shortcut) if shortcut is not None else nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)
