"""Pretrained encoders from local files: BERT checkpoints and DenseNet-121 weights (ImageNet's
from torchvision, timm or Keras; torchxrayvision's chest X-ray ones).

Nothing is ever fetched from a hub. Safe formats (safetensors, Flax msgpack) load as they
are; PyTorch pickles (`pytorch_model.bin`, `.pth`, `.pt`) need torch and unpickling, and load
only with `allow_pickle=True`, since unpickling a file can run code from it. A pickle of a
whole model (`torch.save(model)`, as torchxrayvision's checkpoints are) is unpickled in full
and its `state_dict()` read, which needs the model's package (torchxrayvision) importable.
Keras `.h5` weights load through Keras (TensorFlow), imported only when such a file is asked for.

Every loader checks the file against the Flax model's variables: a missing key or a shape
mismatch is an error naming the key; unused keys are reported by name.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import transformers
from absl import logging
from flax import serialization, traverse_util

from vkd_jax.errors import WeightsError, one_line
from vkd_jax.models import bert as bert_lib, densenet as densenet_lib

BERT_FILES = ("model.safetensors", "flax_model.msgpack", "pytorch_model.bin")
PICKLE_SUFFIXES = (".bin", ".pth", ".pt")
# The one conversion of a torchxrayvision checkpoint to safetensors (docs/pretrained.md, and the error
# for a pickle whose class cannot be imported): `vkd-jax convert-xrv` (vkd_jax.pretrained.xrv), which
# takes a torchxrayvision name (read from ~/.torchxrayvision/models_data/, downloaded when absent)
# or a checkpoint file.
XRV_CONVERT_COMMAND = "vkd-jax convert-xrv --weights=densenet121-res224-all --output=xrv_densenet121.safetensors"


@dataclasses.dataclass(frozen=True)
class LoadReport:
    path: str
    num_params: int
    unused: tuple[str, ...]

    def log(self, what: str) -> None:
        logging.info("%s: loaded %s (%d parameters)", what, self.path, self.num_params)
        if self.unused:
            logging.warning("%s: %d unused keys in %s: %s", what, len(self.unused), self.path, ", ".join(self.unused))


def read_torch_file(path: str, *, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """A PyTorch-style state dict (key -> numpy array) from `.safetensors` or, with
    `allow_pickle`, a torch pickle (`.bin`, `.pth`, `.pt`)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no weights file at {path}")
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsError(f"{path} is not a readable safetensors file ({one_line(e)})") from None
    if path.endswith(PICKLE_SUFFIXES):
        if not allow_pickle:
            raise WeightsError(
                f"{path} is a PyTorch pickle: loading it needs torch and unpickling, which can run code "
                "from the file. Convert it to safetensors, or pass allow_pickle=True "
                "(config: init_allow_pickle=True) if you trust the file."
            )
        import torch  # only for this explicitly allowed path

        logging.warning("unpickling %s with torch (allowed explicitly)", path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # more than tensors: a whole model, as torchxrayvision saves them
            state = _unpickle_model(path)
        if isinstance(state, torch.nn.Module):
            state = state.state_dict()
        elif isinstance(state, Mapping):
            state = state.get("state_dict", state)
        else:
            raise WeightsError(f"{path}: expected a state dict or a torch.nn.Module, found a {type(state).__name__}")
        return {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}
    raise WeightsError(f"{path}: expected a .safetensors file{' or ' + '/'.join(PICKLE_SUFFIXES)}")


def _unpickle_model(path: str):
    """The object pickled in `path` in full (`torch.load(weights_only=False)`): classes and all,
    so their package must be importable, and the file's code runs."""
    import torch

    from vkd_jax.pretrained import torchvision_ops

    torchvision_ops.declare_missing_ops()  # torchxrayvision imports torchvision, whose C ops may not load
    logging.warning("%s holds more than tensors (a whole model?): unpickling it in full", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (ImportError, AttributeError) as e:  # the pickled model's class is not importable
        raise WeightsError(
            f"{path} is a pickled model whose class cannot be imported ({e}). A torchxrayvision checkpoint "
            "needs torchxrayvision to unpickle: `pip install torchxrayvision`, or convert it to safetensors "
            f"once where it is installed: {XRV_CONVERT_COMMAND}"
        ) from e


def _fill(
    abstract: Mapping,
    state: Mapping[str, np.ndarray],
    key_fn: Callable,
    convert: Callable,
    ignore: Callable[[str], bool],
    path: str,
) -> tuple[dict, LoadReport]:
    """Fills every leaf of `abstract` (ShapeDtypeStructs, flattened by path) from `state`."""
    flat = traverse_util.flatten_dict(abstract)
    out, used = {}, set()
    for flax_path, leaf in flat.items():
        key = key_fn(flax_path)
        if key not in state:
            raise WeightsError(f"{path}: missing key {key!r} (for {'/'.join(flax_path)})")
        value = convert(flax_path, np.asarray(state[key]))
        if value.shape != tuple(leaf.shape):
            raise WeightsError(
                f"{path}: {key!r} has shape {value.shape}, the model expects {tuple(leaf.shape)} "
                f"(after conversion to the Flax layout)"
            )
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise WeightsError(
                f"{path}: {key!r} holds {np.size(value) - np.isfinite(value).sum()} non-finite values (NaN or Inf): "
                "the file is damaged or was saved from a diverged training"
            )
        out[flax_path] = value.astype(leaf.dtype)
        used.add(key)
    unused = tuple(sorted(k for k in state if k not in used and not ignore(k)))
    return traverse_util.unflatten_dict(out), LoadReport(path, sum(v.size for v in out.values()), unused)


# ----------------------------------------------------------------------------- BERT

_BERT_OLD_NAMES = (("LayerNorm.weight", "LayerNorm.gamma"), ("LayerNorm.bias", "LayerNorm.beta"))


def _canonical_bert_keys(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`BertModel` keys from checkpoints of `BertForPreTraining` & co (`bert.` prefix, gamma/beta)."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("bert.")
        for new, old in _BERT_OLD_NAMES:
            key = key.replace(old, new)
        out[key] = value
    return out


def _bert_abstract_params(cfg: transformers.BertConfig, add_pooling_layer: bool):
    model = bert_lib.Bert(cfg, add_pooling_layer=add_pooling_layer)
    ids = jnp.ones((1, 2), jnp.int32)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), ids, ids))["params"]


def load_bert(
    path: str,
    *,
    allow_pickle: bool = False,
    add_pooling_layer: bool = False,
) -> tuple[transformers.BertConfig, dict[str, Any]]:
    """`(config, params)` of the BERT checkpoint directory `path` (Hugging Face layout:
    `config.json` and `model.safetensors`, `flax_model.msgpack` or `pytorch_model.bin`).

    `vkd_jax.models.bert.Bert(config).apply({'params': params}, input_ids, attention_mask)`
    then returns the last hidden state `[B, L, H]`. Pooler and pre-training heads in the
    file are reported as unused unless `add_pooling_layer`.
    """
    loaded, _ = load_bert_with_report(path, allow_pickle=allow_pickle, add_pooling_layer=add_pooling_layer)
    return loaded


def load_bert_with_report(path: str, *, allow_pickle: bool = False, add_pooling_layer: bool = False):
    """`((config, params), LoadReport)`: `load_bert` plus what was read and left unused."""
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(
            f"{path}: expected a Hugging Face BERT directory with config.json and one of {', '.join(BERT_FILES)}"
        )
    cfg = transformers.BertConfig.from_pretrained(path, local_files_only=True)
    abstract = _bert_abstract_params(cfg, add_pooling_layer)
    files = [f for f in BERT_FILES if os.path.isfile(os.path.join(path, f))]
    if not files:
        raise FileNotFoundError(f"{path}: no weights file; expected one of {', '.join(BERT_FILES)}")
    file = os.path.join(path, files[0])
    if file.endswith(".msgpack"):
        with open(file, "rb") as f:
            tree = serialization.msgpack_restore(f.read())
        tree = tree.get("bert", tree)  # pre-training checkpoints nest the encoder
        state = {"/".join(k): v for k, v in traverse_util.flatten_dict(tree).items()}
        params, report = _fill(abstract, state, lambda p: "/".join(p), lambda p, v: v, lambda k: False, file)
    else:
        params, report = bert_params_from_state_dict(abstract, read_torch_file(file, allow_pickle=allow_pickle), file)
    return (cfg, params), report


def bert_params_from_state_dict(abstract_params, state: Mapping[str, np.ndarray], source: str = "state dict"):
    """`(params, LoadReport)` from a PyTorch BERT state dict (`BertModel` keys, or those of
    pre-training checkpoints: `bert.` prefix, LayerNorm `gamma`/`beta`)."""
    ignore = lambda k: k.endswith("position_ids")  # a buffer, not a parameter
    return _fill(
        abstract_params, _canonical_bert_keys(state), bert_lib.torch_key, bert_lib.torch_to_flax, ignore, source
    )


# ----------------------------------------------------------------------------- DenseNet-121

# Old torchvision checkpoints name dense-layer modules 'norm.1' instead of 'norm1'.
_OLD_TORCHVISION = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _densenet_abstract_variables(in_channels: int):
    model = densenet_lib.DenseNet121()
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, in_channels)), train=False))


def _densenet_key(flax_path):
    collection, *path = flax_path
    return densenet_lib.torch_key(tuple(path), collection)


def _densenet_convert(flax_path, value):
    return densenet_lib.torch_to_flax_kernel(value) if flax_path[-1] == "kernel" else value


def densenet_variables_from_state_dict(abstract_variables, state: Mapping[str, np.ndarray], source: str = "state dict"):
    """`(variables, LoadReport)` of a DenseNet from a torchvision/timm/torchxrayvision state
    dict. Its head (`classifier.*`; torchxrayvision's `op_threshs`) is not ours and is
    reported as unused; BatchNorm counters (`num_batches_tracked`) are ignored."""
    state = {_OLD_TORCHVISION.sub(r"\1\2", k): v for k, v in state.items()}
    ignore = lambda k: k.endswith("num_batches_tracked")
    return _fill(abstract_variables, state, _densenet_key, _densenet_convert, ignore, source)


def load_densenet121(path: str, *, allow_pickle: bool = False, in_channels: int = 3) -> dict[str, Any]:
    """`{'params', 'batch_stats'}` of DenseNet-121 from the weights at `path`.

    Accepts torchvision/timm ImageNet state dicts and torchxrayvision's chest X-ray ones
    (`.safetensors`; `.pth`/`.pt` with `allow_pickle`, a whole pickled torchxrayvision model
    included) and Keras `DenseNet121` weights (`.h5`). `DenseNet121().apply(variables, images,
    train=False)` returns the pooled features `[B, 1024]`.

    The first convolution takes the file's input channels to `in_channels`: RGB weights with
    `in_channels=1` have their kernels summed over RGB, which is exact for gray images
    replicated to three channels. One-channel weights (torchxrayvision's) need `in_channels=1`
    (`data.channels=1`, with `data.normalization='torchxrayvision'`); `in_channels=3` is an error.
    """
    variables, _ = load_densenet121_with_report(path, allow_pickle=allow_pickle, in_channels=in_channels)
    return variables


def load_densenet121_with_report(path: str, *, allow_pickle: bool = False, in_channels: int = 3):
    """`(variables, LoadReport)`: `load_densenet121` plus what was read and left unused."""
    if in_channels not in (1, 3):
        raise WeightsError(f"in_channels must be 1 or 3 for DenseNet-121 weights, got {in_channels}")
    if path.endswith(".h5"):
        from vkd_jax.pretrained import keras_densenet  # imports TensorFlow; never on the train-step path

        try:
            state = keras_densenet.read_keras_densenet121(path)
        except OSError as e:  # h5py: not an HDF5 file
            raise WeightsError(f"{path} is not a readable Keras .h5 weights file ({one_line(e)})") from None
    else:
        state = read_torch_file(path, allow_pickle=allow_pickle)
    conv0 = state.get("features.conv0.weight")  # [O, I, kH, kW]; missing or misshapen: _fill names it
    file_channels = conv0.shape[1] if conv0 is not None and np.ndim(conv0) == 4 else 3
    if file_channels not in (1, 3):
        raise WeightsError(f"{path}: features.conv0.weight has {file_channels} input channels, expected 3 or 1")
    if file_channels == 1 and in_channels == 3:
        raise WeightsError(
            f"{path} has one-channel weights (a torchxrayvision checkpoint?): set data.channels=1 "
            "(and data.normalization='torchxrayvision' for torchxrayvision's), not 3"
        )
    variables, report = densenet_variables_from_state_dict(_densenet_abstract_variables(file_channels), state, path)
    if file_channels == 3 and in_channels == 1:
        kernel = variables["params"]["conv0"]["kernel"]
        variables["params"]["conv0"]["kernel"] = kernel.sum(axis=2, keepdims=True)
    return variables, report
