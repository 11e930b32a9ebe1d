"""One real Fashion-MNIST subset, f_D and Retrain for every method test, trained once per session.

100 training images per class (D_f = the 100 of class 0), 50 test images per class, cnn_small. The
reference recipe trains with lr 1e-3 for 8 epochs (LAF: 1e-4 for 20), so f_D learns the subset in
seconds; f_D's Train_f is 89%, its Test_r 80.9% (Retrain: 0% and 80.7%).
"""
from __future__ import annotations

import pytest
from method_helpers import FASHION_MNIST, REAL, RESNET, tiny_prepared

from mixunlearn.run import prepare


@pytest.fixture(scope="session")
def real(tmp_path_factory):
    if not FASHION_MNIST.is_dir():
        pytest.skip("Fashion-MNIST is not installed (apt-get install -y dataset-fashion-mnist)")
    return prepare(REAL, device="cpu", cache_dir=tmp_path_factory.mktemp("methods-cache"))


@pytest.fixture(scope="session")
def resnet():
    """The BatchNorm network of the parity tests: resnet18_cifar on 4 CIFAR-10 images per class (D_f = the 4
    of class 0), untrained, its running statistics set by a few train-mode passes over D so that eval mode
    (f_D's statistics) and train mode (the batch's) differ as they do for a trained f_D. Only the update
    rules are compared here, so f_D need not be good; it costs no training."""
    return tiny_prepared(RESNET, statistics_passes=3)
