"""PyTorch definitions of the architectures of examples/myrtle5.cpp and examples/wide_resnet.cpp: the source of
truth of their conformance fixtures (make_fixtures.py), converted to xntk's model JSON by export_torch.py.

- myrtle(depth, width): the Myrtle CNNs of Shankar et al., "Neural Kernels Without Tangents" (ICML 2020), laid
  out as neural-tangents' MyrtleNetwork: 3x3 convolutions with padding 1 ("SAME"), each followed by a ReLU, in
  three stages of 2-1-1 (Myrtle-5), 2-2-2 (Myrtle-7) or 3-3-3 (Myrtle-10) convolutions; a 2x2 average pool after
  the first two stages and three after the last (on 32x32 images: 32 -> 16 -> 8 -> 4 -> 2 -> 1, i.e. a global
  average over the last 8x8 map); flatten; Linear(width, 10). An nn.Sequential, so its state_dict keys are indices.
- WideResNet(depth, widen_factor, base, num_classes): WRN-depth-k of Zagoruyko & Komodakis, "Wide Residual
  Networks" (BMVC 2016), as their reference PyTorch implementation: conv3x3 stem to `base` channels (16 in the
  paper), three groups of (depth - 4) / 6 pre-activation BasicBlocks with base*k, 2*base*k and 4*base*k channels
  (strides 1, 2, 2), then BatchNorm-ReLU, a global average pool and Linear. Convolutions have no bias. A block is
  BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus a shortcut: the identity when the shape is kept, otherwise a strided 1x1
  convolution of the block's pre-activated input relu1(bn1(x)) (which then feeds both branches). No dropout.
"""

import torch
import torch.nn as nn

MYRTLE_STAGES = {5: (2, 1, 1), 7: (2, 2, 2), 10: (3, 3, 3)}


def myrtle(depth=5, width=8, in_channels=3, num_classes=10):
    """The Myrtle CNN of the given depth (5, 7 or 10) as an nn.Sequential, in float64."""
    layers, c = [], in_channels
    for stage, convs in enumerate(MYRTLE_STAGES[depth]):
        for _ in range(convs):
            layers += [nn.Conv2d(c, width, 3, padding=1, dtype=torch.float64), nn.ReLU()]
            c = width
        layers += [nn.AvgPool2d(2) for _ in range(3 if stage == 2 else 1)]
    layers += [nn.Flatten(), nn.Linear(width, num_classes, dtype=torch.float64)]
    return nn.Sequential(*layers)


class WideBasicBlock(nn.Module):
    """The pre-activation block of the WRN reference implementation (its names: bn1, relu1, conv1, bn2, relu2,
    conv2, convShortcut)."""

    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        f64 = dict(dtype=torch.float64)
        self.bn1 = nn.BatchNorm2d(in_planes, **f64)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False, **f64)
        self.bn2 = nn.BatchNorm2d(out_planes, **f64)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, padding=1, bias=False, **f64)
        self.equal_in_out = in_planes == out_planes and stride == 1
        self.convShortcut = None if self.equal_in_out else nn.Conv2d(in_planes, out_planes, 1, stride=stride,
                                                                     bias=False, **f64)

    def forward(self, x):
        a = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(a))))
        return out + (x if self.equal_in_out else self.convShortcut(a))


class WideResNet(nn.Module):
    def __init__(self, depth=10, widen_factor=2, base=4, num_classes=10, in_channels=3):
        super().__init__()
        assert (depth - 4) % 6 == 0, "WRN depth is 6n + 4"
        n = (depth - 4) // 6
        widths = [base, base * widen_factor, 2 * base * widen_factor, 4 * base * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False, dtype=torch.float64)
        for g, stride in enumerate((1, 2, 2)):
            blocks = [WideBasicBlock(widths[g] if i == 0 else widths[g + 1], widths[g + 1], stride if i == 0 else 1)
                      for i in range(n)]
            setattr(self, f"block{g + 1}", nn.Sequential(*blocks))
        self.bn1 = nn.BatchNorm2d(widths[3], dtype=torch.float64)
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes, dtype=torch.float64)

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.avgpool(self.relu(self.bn1(out)))
        return self.fc(torch.flatten(out, 1))
