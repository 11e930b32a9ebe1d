"""The classifiers that MixUnlearn unlearns, each split at the feature map its generator reads.

    model = build_model("resnet18_cifar", num_classes=10, in_channels=3, image_size=32)
    h = model.features(x)          # [B, 256, 8, 8]: layer3, what the MixBlock attends over
    logits = model.head(h)         # [B, 10];  model(x) == model.head(model.features(x))

Architectures follow ../shared/docs/METHOD.md "Models". Every model exposes `feature_channels` (the C of
the feature map), `features(x)` and `head(h)`, so f_D's features and f_U's logits come from one module
without hooks. Inputs are always the data set's native size: resnet18_laf resizes to 224x224 itself.
All three run under channels_last and bf16 autocast (nothing here pins a dtype or a memory layout).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    import torchvision

# ---- small CNN (MNIST / Fashion-MNIST track) ---------------------------------------------------


class SmallCNN(nn.Module):
    """LAF's MNIST CNN: two conv blocks (the feature map), then three linear layers.

    `cnn_small` puts a ReLU after each hidden linear layer (METHOD.md "Models"); `cnn_laf` is LAF's own
    `Model.py` CNN, which has none: its embedding fc1(x) feeds fc2 = Linear(256, 128), Linear(128, 10)
    directly. Same parameters, so the same initial weights from the same seed.
    """

    feature_channels = 32

    def __init__(self, *, num_classes: int, in_channels: int, image_size: int, hidden_relu: bool = True) -> None:
        super().__init__()
        # padding 2 keeps each conv size-preserving, so two pools give S/4 (7x7 at 28x28).
        assert image_size % 4 == 0, f"cnn_small needs an image size divisible by 4, got {image_size}"
        self.conv_blocks = nn.Sequential(
            nn.Conv2d(in_channels, 16, kernel_size=5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        side = image_size // 4
        def act() -> nn.Module:
            return nn.ReLU(inplace=True) if hidden_relu else nn.Identity()

        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * side * side, 256), act(),
            nn.Linear(256, 128), act(),
            nn.Linear(128, num_classes),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_blocks(x)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.classifier(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ---- ResNet-18 (both tracks share torchvision's blocks) -----------------------------------------


class ResNet18(nn.Module):
    """torchvision's ResNet-18 split after layer3 (256 channels), with an optional input resize.

    The CIFAR variant (3x3 stride-1 stem, no max-pool) is the unlearning-benchmark ResNet of SalUn and
    kuangliu/pytorch-cifar: same BasicBlocks and 1x1-conv shortcuts, so torchvision's blocks serve both.
    """

    feature_channels = 256

    def __init__(self, trunk: torchvision.models.ResNet, classifier: nn.Module, *, resize_to: int | None) -> None:
        super().__init__()
        self.stem = nn.Sequential(trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4
        self.classifier = classifier
        self.resize_to = resize_to

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize_to is not None and x.shape[-2:] != (self.resize_to, self.resize_to):
            x = F.interpolate(x, size=(self.resize_to, self.resize_to), mode="bilinear", align_corners=False)
        return self.layer3(self.layer2(self.layer1(self.stem(x))))

    def head(self, h: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(self.layer4(h), 1).flatten(1)
        return self.classifier(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def torchvision_resnet18() -> torchvision.models.ResNet:
    # Imported here, not at the top: torchvision doubles a process's import time (~4 s on the CI box),
    # which every cnn_small trial and test process would otherwise pay for nothing.
    import torchvision

    return torchvision.models.resnet18(weights=None)


def resnet18_cifar(*, num_classes: int, in_channels: int) -> ResNet18:
    trunk = torchvision_resnet18()
    trunk.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    # torchvision initialises its convs this way; the replaced stem gets the same treatment.
    nn.init.kaiming_normal_(trunk.conv1.weight, mode="fan_out", nonlinearity="relu")
    trunk.maxpool = nn.Identity()
    return ResNet18(trunk, nn.Linear(512, num_classes), resize_to=None)


def resnet18_laf(*, num_classes: int, in_channels: int) -> ResNet18:
    """The paper's track: ImageNet ResNet-18 from scratch at 224x224, 512 -> 256 embedding -> classes.

    METHOD.md gives no nonlinearity between the embedding and the classifier, so there is none.
    """
    trunk = torchvision_resnet18()
    if in_channels != 3:
        trunk.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(trunk.conv1.weight, mode="fan_out", nonlinearity="relu")
    classifier = nn.Sequential(nn.Linear(512, 256), nn.Linear(256, num_classes))
    return ResNet18(trunk, classifier, resize_to=224)


# ---- the one entry point -------------------------------------------------------------------------

MODEL_NAMES = ("cnn_small", "cnn_laf", "resnet18_cifar", "resnet18_laf")
CNN_MODELS = ("cnn_small", "cnn_laf")   # the (Fashion-)MNIST track's networks: its measured method defaults


def build_model(name: str, *, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """A freshly initialised model (from the global torch RNG: seed it, or fork it, to reproduce).

    Args:
        name: one of MODEL_NAMES (config.MODELS).
        num_classes: logits per sample.
        in_channels: image channels (1 for MNIST-like sets, 3 for CIFAR-10 / SVHN).
        image_size: the data set's native side length H (= W); resnet18_laf resizes it to 224 itself.
    """
    if name in CNN_MODELS:
        return SmallCNN(num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                        hidden_relu=name == "cnn_small")
    if name == "resnet18_cifar":
        return resnet18_cifar(num_classes=num_classes, in_channels=in_channels)
    if name == "resnet18_laf":
        return resnet18_laf(num_classes=num_classes, in_channels=in_channels)
    raise ValueError(f"model {name!r} is unknown; use one of {', '.join(MODEL_NAMES)}")
