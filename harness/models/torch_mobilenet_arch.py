"""MobileNetV2 (Sandler et al., 2018) in plain torch.nn, for the built-in `builtin:mobilenet_v2`.

torchvision has the same network, but PyPI's torchvision does not load beside the pinned torch
2.13.0 CPU wheel ("operator torchvision::nms does not exist"), so the few lines are here. The layer
layout follows torchvision's `mobilenet_v2` (so its names and the published architecture agree):
a stride-2 3x3 stem, 17 inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 linear
projection, a residual add where shapes allow), a 1x1 head conv, global average pooling, dropout
and a linear classifier. `width` scales every channel count, rounded to a multiple of 8.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

# (expansion t, output channels c, repeats n, first stride s), as in the paper's Table 2
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of `divisor`, never more than 10% below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def build_mobilenet_v2(
    num_classes: int, width: float = 1.0, in_channels: int = 3, dropout: float = 0.2
) -> nn.Module:
    """An untrained MobileNetV2; every input size of 32x32 or more works (global pooling)."""
    from torch import nn

    def conv_bn(
        c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1, act: bool = True
    ) -> list[nn.Module]:
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        return layers

    class InvertedResidual(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = c_in * expand
            self.use_residual = stride == 1 and c_in == c_out
            layers: list[nn.Module] = []
            if expand != 1:
                layers += conv_bn(c_in, hidden, 1, 1)
            layers += conv_bn(hidden, hidden, 3, stride, groups=hidden)
            layers += conv_bn(hidden, c_out, 1, 1, act=False)
            self.conv = nn.Sequential(*layers)

        def forward(self, x: Any) -> Any:
            return x + self.conv(x) if self.use_residual else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            c_in = make_divisible(32 * width)
            last = make_divisible(1280 * max(1.0, width))
            features: list[nn.Module] = [nn.Sequential(*conv_bn(in_channels, c_in, 3, 2))]
            for t, c, n, s in INVERTED_RESIDUAL_SETTING:
                c_out = make_divisible(c * width)
                for i in range(n):
                    features.append(InvertedResidual(c_in, c_out, s if i == 0 else 1, t))
                    c_in = c_out
            features.append(nn.Sequential(*conv_bn(c_in, last, 1, 1)))
            self.features = nn.Sequential(*features)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))

        def forward(self, x: Any) -> Any:
            return self.classifier(self.pool(self.features(x)).flatten(1))

    model = MobileNetV2()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)
    return model
