"""The classifiers: shapes of logits and of the feature map G reads, the split, and the architectures."""
from __future__ import annotations

import pytest
import torch

from mixunlearn.models import MODEL_NAMES, build_model

# (model, in_channels, image_size, feature map [C, h, w]) for the data sets each model meets.
CASES = [
    ("cnn_small", 1, 28, (32, 7, 7)),
    ("cnn_small", 3, 32, (32, 8, 8)),
    ("cnn_laf", 1, 28, (32, 7, 7)),
    ("resnet18_cifar", 3, 32, (256, 8, 8)),
    ("resnet18_cifar", 1, 28, (256, 7, 7)),
    ("resnet18_laf", 3, 32, (256, 14, 14)),
    ("resnet18_laf", 1, 28, (256, 14, 14)),
]


def make(name: str, in_channels: int, image_size: int, num_classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, num_classes=num_classes, in_channels=in_channels, image_size=image_size).eval()


@pytest.mark.parametrize("name, in_channels, image_size, feature_shape", CASES)
def test_shapes_and_forward_is_head_of_features(name, in_channels, image_size, feature_shape):
    model = make(name, in_channels, image_size, num_classes=7)
    x = torch.randn(2, in_channels, image_size, image_size)
    with torch.no_grad():
        h = model.features(x)
        logits = model(x)
        assert h.shape == (2, *feature_shape)
        assert model.feature_channels == feature_shape[0]
        assert logits.shape == (2, 7)
        torch.testing.assert_close(logits, model.head(h), rtol=0, atol=0)


@pytest.mark.parametrize("name, in_channels, image_size", [("cnn_small", 1, 28), ("resnet18_cifar", 3, 32)])
def test_channels_last_and_bf16_autocast(name, in_channels, image_size):
    model = make(name, in_channels, image_size)
    x = torch.randn(4, in_channels, image_size, image_size)
    with torch.no_grad():
        reference = model(x)
        model = model.to(memory_format=torch.channels_last)
        x_last = x.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(model(x_last), reference, rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = model.features(x_last)
            logits = model.head(h)
    assert h.dtype == torch.bfloat16 and logits.shape == reference.shape
    assert torch.isfinite(logits.float()).all()


def test_gradients_reach_every_parameter():
    model = make("resnet18_cifar", 3, 32).train()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_architectures_match_the_spec():
    # cnn_small: METHOD.md's layer list (416 + 12,832 + 401,664 + 32,896 + 1,290).
    # resnet18_cifar: kuangliu/pytorch-cifar's ResNet18 has 11,173,962 parameters at 10 classes.
    # resnet18_laf: torchvision resnet18 minus its fc, plus 512->256 and 256->10.
    # cnn_laf: LAF's Model.py CNN, cnn_small's layers without the hidden ReLUs.
    expected = {"cnn_small": 449_098, "cnn_laf": 449_098, "resnet18_cifar": 11_173_962, "resnet18_laf": 11_310_410}
    sizes = {"cnn_small": (1, 28), "cnn_laf": (1, 28), "resnet18_cifar": (3, 32), "resnet18_laf": (3, 32)}
    for name in MODEL_NAMES:
        model = make(name, *sizes[name])
        assert sum(p.numel() for p in model.parameters()) == expected[name], name


def test_cnn_laf_is_cnn_small_without_its_hidden_relus():
    """Same weights from the same seed; the embedding fc1(x) feeds the next layer as it is (LAF's Model.py)."""
    small, laf = make("cnn_small", 1, 28), make("cnn_laf", 1, 28)
    for (key, a), b in zip(small.state_dict().items(), laf.state_dict().values()):
        assert torch.equal(a, b), key
    assert not any(isinstance(m, torch.nn.ReLU) for m in laf.classifier.modules())
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        embedding = laf.classifier[1](laf.classifier[0](laf.features(x)))
        assert (embedding < 0).any()
        torch.testing.assert_close(laf(x), laf.classifier[5](laf.classifier[3](embedding)), rtol=0, atol=0)
        assert not torch.equal(laf(x), small(x))


def test_unknown_model_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="resnet18_cifar"):
        build_model("vgg", num_classes=10, in_channels=3, image_size=32)
