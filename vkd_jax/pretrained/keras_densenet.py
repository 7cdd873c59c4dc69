"""Keras `DenseNet121` weights (`.h5`) as a torchvision-keyed state dict.

Imports Keras, hence TensorFlow: `vkd_jax.pretrained.files` imports this module only when a `.h5`
file is loaded, so the train step and the models never pull TensorFlow in.
"""

from __future__ import annotations

import os
import re

import numpy as np

_BLOCK = re.compile(r"^conv(\d)_block(\d+)_(0_bn|1_conv|1_bn|2_conv)$")
_TRANSITION = re.compile(r"^pool(\d)_(bn|conv)$")
_LAYER_PART = {"0_bn": "norm1", "1_conv": "conv1", "1_bn": "norm2", "2_conv": "conv2"}
_FIXED = {"conv1_conv": "features.conv0", "conv1_bn": "features.norm0", "bn": "features.norm5"}


def torchvision_module(keras_name: str) -> str | None:
    """`conv3_block2_1_conv` -> `features.denseblock2.denselayer2.conv1`; None if not ours."""
    if keras_name in _FIXED:
        return _FIXED[keras_name]
    if m := _BLOCK.match(keras_name):
        block, layer, part = int(m[1]) - 1, int(m[2]), m[3]
        return f"features.denseblock{block}.denselayer{layer}.{_LAYER_PART[part]}"
    if m := _TRANSITION.match(keras_name):
        return f"features.transition{int(m[1]) - 1}.{'norm' if m[2] == 'bn' else 'conv'}"
    return None


def keras_layers_to_state_dict(layers) -> dict[str, np.ndarray]:
    """Keras layers with weights -> torchvision keys and layouts (conv kernels OIHW)."""
    state = {}
    for layer in layers:
        weights = layer.get_weights()
        module = torchvision_module(layer.name)
        if not weights or module is None:
            continue
        if len(weights) == 1:  # convolution without bias, HWIO -> OIHW
            state[f"{module}.weight"] = np.transpose(weights[0], (3, 2, 0, 1))
        else:  # BatchNorm: gamma, beta, moving mean, moving variance
            for name, w in zip(("weight", "bias", "running_mean", "running_var"), weights):
                state[f"{module}.{name}"] = w
    return state


def read_keras_densenet121(path: str) -> dict[str, np.ndarray]:
    """Loads Keras DenseNet-121 weights (with or without the top) into a torchvision-keyed dict."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no Keras weights file at {path}")
    import keras

    model = keras.applications.DenseNet121(weights=None, include_top=False)
    try:
        model.load_weights(path, skip_mismatch=False)
    except ValueError:
        # ImageNet files with the classifier ('..._tf_kernels.h5') have one layer more.
        model = keras.applications.DenseNet121(weights=None, include_top=True)
        model.load_weights(path)
    return keras_layers_to_state_dict(model.layers)
