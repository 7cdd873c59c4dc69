"""DenseNet image encoder (torchvision layout), used as the VKD image branch.

The module reproduces torchvision's `DenseNet` feature extractor exactly, and its
variable names are chosen so that every Flax variable maps one-to-one onto a key of
torchvision's state dict (see `torch_key`). That lets ImageNet / CheXpert weights
published for PyTorch be converted without a hand-written table.

Known numerical difference from PyTorch: in training mode torch updates
`running_var` with the unbiased batch variance, Flax with the biased one. Outputs in
train mode (which normalise with the biased variance in both) are unaffected.
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

Dtype = Any

# torchvision initialises convs with kaiming_normal_ (fan_in, gain sqrt(2)).
_conv_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class _Layers(nn.Module):
    """Shared constructors so every conv / BN gets the same dtype and BN settings."""

    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    def _norm(self, name: str, train: bool) -> nn.BatchNorm:
        return nn.BatchNorm(
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            axis_name=self.bn_axis_name,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=name,
        )

    def _conv(self, name: str, features: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Conv:
        return nn.Conv(
            features,
            (kernel, kernel),
            strides=(stride, stride),
            padding=((padding, padding), (padding, padding)),
            use_bias=False,
            kernel_init=_conv_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=name,
        )


class _DenseLayer(_Layers):
    """BN-ReLU-Conv1x1-BN-ReLU-Conv3x3; returns only the `growth_rate` new channels.

    `x` is the block's features so far: one array, or a tuple of the pieces (the block's
    input and each earlier layer's new channels), concatenated here. Under `nn.remat` the
    tuple form keeps the concatenation inside the recomputed function, so the backward pass
    stores only the pieces, each once for the whole block (the memory-efficient DenseNet of
    Pleiss et al., 2017), not a concatenation of all earlier features per layer.
    """

    growth_rate: int = 32
    bn_size: int = 4

    @nn.compact
    def __call__(self, x: jnp.ndarray | tuple[jnp.ndarray, ...], train: bool) -> jnp.ndarray:
        # `train` is positional so that nn.remat can mark it static (argnum 2).
        if isinstance(x, tuple):
            x = jnp.concatenate(x, axis=-1)
        y = nn.relu(self._norm("norm1", train)(x))
        y = self._conv("conv1", self.bn_size * self.growth_rate, 1)(y)
        y = nn.relu(self._norm("norm2", train)(y))
        return self._conv("conv2", self.growth_rate, 3, padding=1)(y)


class _DenseBlock(_Layers):
    """`num_layers` dense layers, each fed the concatenation of all previous outputs."""

    num_layers: int = 6
    growth_rate: int = 32
    bn_size: int = 4
    remat: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        layer_cls = nn.remat(_DenseLayer, static_argnums=(2,)) if self.remat else _DenseLayer
        # With remat, each layer gets the pieces and concatenates them itself (see
        # _DenseLayer); without, the running concatenation, as torchvision computes it.
        pieces = [x]
        for j in range(1, self.num_layers + 1):
            new = layer_cls(
                growth_rate=self.growth_rate,
                bn_size=self.bn_size,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                bn_axis_name=self.bn_axis_name,
                bn_momentum=self.bn_momentum,
                bn_epsilon=self.bn_epsilon,
                name=f"denselayer{j}",
            )(tuple(pieces) if self.remat else x, train)
            if self.remat:
                pieces.append(new)
            else:
                x = jnp.concatenate([x, new], axis=-1)
        return jnp.concatenate(pieces, axis=-1) if self.remat else x


class _Transition(_Layers):
    """BN-ReLU-Conv1x1-AvgPool2x2 between dense blocks."""

    features: int = 0

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        x = nn.relu(self._norm("norm", train)(x))
        x = self._conv("conv", self.features, 1)(x)
        return nn.avg_pool(x, (2, 2), strides=(2, 2))


class DenseNet(_Layers):
    """torchvision DenseNet without its classifier.

    Attributes:
      block_sizes: dense layers per block ((6, 12, 24, 16) for DenseNet-121).
      growth_rate: channels added by each dense layer.
      bn_size: bottleneck width multiplier (1x1 conv has bn_size * growth_rate outputs).
      num_init_features: channels of the stem convolution.
      compression: transitions keep floor(C * compression) channels.
      dtype / param_dtype: compute and parameter dtypes; features are returned in float32.
      bn_axis_name: mapped axis (e.g. 'data' inside shard_map) over which BatchNorm
        averages batch statistics, so they are those of the global batch.
      bn_momentum / bn_epsilon: Flax convention (torch momentum 0.1 == Flax 0.9).
      remat: rematerialise each dense layer, with its input concatenation, in the backward
        pass: only each layer's new channels are kept, so activation memory grows linearly
        with depth instead of quadratically (costs a second forward of the dense layers).
      stem_pool: the stem's 3x3 max-pool (torchvision's); without it every map is twice as
        wide and high (4x the compute), for small images.
      pool_grid: 1 averages the final map globally (torchvision's); g > 1 averages it over a
        g x g grid of cells and concatenates them (C * g * g features), which keeps *where*
        a feature was seen. The final map's side must be a multiple of g.
    """

    block_sizes: Sequence[int] = (6, 12, 24, 16)
    growth_rate: int = 32
    bn_size: int = 4
    num_init_features: int = 64
    compression: float = 0.5
    remat: bool = False
    stem_pool: bool = True
    pool_grid: int = 1

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        """Maps images [B, H, W, C_in] (any C_in) to pooled features [B, C] float32.

        C is 1024 for DenseNet-121. Spatial size is reduced 32x before pooling.
        Running statistics live in the `batch_stats` collection; with train=True they
        must be marked mutable.
        """
        x = jnp.asarray(x, self.dtype)
        x = self._conv("conv0", self.num_init_features, 7, stride=2, padding=3)(x)
        x = nn.relu(self._norm("norm0", train)(x))
        if self.stem_pool:
            # Padding is -inf for max pooling, as in torch.
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

        for i, num_layers in enumerate(self.block_sizes, start=1):
            x = _DenseBlock(
                num_layers=num_layers,
                growth_rate=self.growth_rate,
                bn_size=self.bn_size,
                remat=self.remat,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                bn_axis_name=self.bn_axis_name,
                bn_momentum=self.bn_momentum,
                bn_epsilon=self.bn_epsilon,
                name=f"denseblock{i}",
            )(x, train)
            if i != len(self.block_sizes):
                x = _Transition(
                    features=int(x.shape[-1] * self.compression),
                    dtype=self.dtype,
                    param_dtype=self.param_dtype,
                    bn_axis_name=self.bn_axis_name,
                    bn_momentum=self.bn_momentum,
                    bn_epsilon=self.bn_epsilon,
                    name=f"transition{i}",
                )(x, train)

        x = nn.relu(self._norm("norm5", train)(x))
        # Mean in float32: a bf16 sum over H*W positions loses precision.
        return grid_mean(x.astype(jnp.float32), self.pool_grid)


def grid_mean(x: jnp.ndarray, grid: int) -> jnp.ndarray:
    """[B, H, W, C] -> [B, C * grid^2]: the mean over each cell of a grid x grid partition,
    cells in row-major order, each cell's C channels together."""
    b, h, w, c = x.shape
    if h % grid or w % grid:
        raise ValueError(f"image_encoder.pool_grid={grid} must divide the final feature map, {h}x{w}")
    cells = x.reshape(b, grid, h // grid, grid, w // grid, c).mean(axis=(2, 4))
    return cells.reshape(b, grid * grid * c)


DenseNet121 = functools.partial(DenseNet, block_sizes=(6, 12, 24, 16), growth_rate=32, bn_size=4, num_init_features=64)
# Same topology at a size that runs in tests on a laptop CPU (final C = 47).
DenseNetTiny = functools.partial(DenseNet, block_sizes=(2, 2, 2, 2), growth_rate=12, bn_size=4, num_init_features=16)


# ----------------------------------------------------------------------------
# torchvision weight conversion.

_TORCH_LEAF = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}


def torch_key(path: Sequence[str], collection: str) -> str:
    """Torchvision state-dict key of a Flax variable.

    E.g. (('denseblock1', 'denselayer1', 'conv1', 'kernel'), 'params') ->
    'features.denseblock1.denselayer1.conv1.weight'; (('norm0', 'mean'),
    'batch_stats') -> 'features.norm0.running_mean'.
    """
    *modules, leaf = path
    try:
        torch_leaf = _TORCH_LEAF[(collection, leaf)]
    except KeyError:
        raise ValueError(f"No torchvision key for {collection}/{'/'.join(path)}") from None
    return ".".join(["features", *modules, torch_leaf])


def torch_to_flax_kernel(w: np.ndarray) -> np.ndarray:
    """Conv weight [O, I, kH, kW] (torch) -> kernel [kH, kW, I, O] (Flax)."""
    return np.transpose(w, (2, 3, 1, 0))
