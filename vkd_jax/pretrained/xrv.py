"""torchxrayvision's DenseNet-121 checkpoints as this project's image encoder: the conversion to
safetensors (`vkd-jax convert-xrv`), and the map from xrv's 18 pathology names to the 14
CheXpert findings.

    vkd-jax convert-xrv --weights=densenet121-res224-all --output=xrv_densenet121.safetensors
    vkd-jax train --config=configs/torchxrayvision.py --workdir=W \
        --config.model.image_encoder.init_from=xrv_densenet121.safetensors

`--weights` is one of torchxrayvision's names (read from `~/.torchxrayvision/models_data/`,
which torchxrayvision downloads into when the file is not there) or the path of a checkpoint
file (a pickle of the whole model, as torchxrayvision ships them). Either way the file is
unpickled by torch, which runs code from it: convert only checkpoints you trust. The
safetensors file then loads without torch. torchxrayvision (hence torch and torchvision) is
needed for the conversion only: `pip install torchxrayvision`.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence

import numpy as np

from vkd_jax.errors import UsageError, WeightsError
from vkd_jax.pretrained import torchvision_ops

# xrv's name -> the CheXpert finding it is (data_pipelines.labels.CLASS_NAMES), for the 11 of
# xrv's 18 (`xrv.datasets.default_pathologies`) that are one. Not mapped: the NIH-only
# Infiltration, Emphysema, Fibrosis, Hernia; Nodule and Mass (kinds of CheXpert's Lung Lesion,
# which xrv also has); Pleural_Thickening (one kind of CheXpert's Pleural Other). CheXpert's
# No Finding, Pleural Other and Support Devices have no xrv output.
XRV_TO_CHEXPERT: dict[str, str] = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
    "Effusion": "Pleural Effusion",
    "Enlarged Cardiomediastinum": "Enlarged Cardiomediastinum",
    "Fracture": "Fracture",
    "Lung Lesion": "Lung Lesion",
    "Lung Opacity": "Lung Opacity",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
}


def to_chexpert(outputs: np.ndarray, pathologies: Sequence[str], class_names: Sequence[str]) -> np.ndarray:
    """xrv's outputs `[N, len(pathologies)]` (columns named by `model.pathologies`; an empty name is
    an output the checkpoint was not trained for) -> `[N, len(class_names)]` in the order of
    `class_names` (the 14 CheXpert findings), NaN where xrv has no counterpart."""
    outputs = np.asarray(outputs, np.float32)
    if outputs.shape[-1] != len(pathologies):
        raise ValueError(f"outputs have {outputs.shape[-1]} columns for {len(pathologies)} pathologies")
    out = np.full(outputs.shape[:-1] + (len(class_names),), np.nan, np.float32)
    for j, name in enumerate(pathologies):
        if name in XRV_TO_CHEXPERT and XRV_TO_CHEXPERT[name] in class_names:
            out[..., list(class_names).index(XRV_TO_CHEXPERT[name])] = outputs[..., j]
    return out


def import_torchxrayvision():
    """`torchxrayvision`, importable beside a CPU-only torch (torchvision_ops)."""
    torchvision_ops.declare_missing_ops()
    try:
        import torchxrayvision
    except ImportError as e:
        raise WeightsError(
            f"converting torchxrayvision weights needs torchxrayvision ({e}): pip install torchxrayvision"
        ) from None
    return torchxrayvision


def read_model(weights: str):
    """xrv's model for `weights`: a torchxrayvision name, or a checkpoint file (a whole pickled
    model, or a state dict, which goes into `xrv.models.DenseNet()`)."""
    xrv = import_torchxrayvision()
    import torch

    if os.path.isfile(weights):
        obj = torch.load(weights, map_location="cpu", weights_only=False)
        if isinstance(obj, torch.nn.Module):
            return obj
        if isinstance(obj, dict):
            model = xrv.models.DenseNet(weights=None)
            model.load_state_dict(obj.get("state_dict", obj), strict=False)
            return model
        raise WeightsError(f"{weights}: expected a pickled torchxrayvision model or a state dict, found {type(obj)}")
    if os.sep in weights or weights.endswith((".pt", ".pth")):
        raise FileNotFoundError(f"--weights={weights}: no such file")
    if weights not in xrv.models.model_urls:
        names = sorted(n for n in xrv.models.model_urls if n.startswith("densenet121"))
        raise UsageError(f"--weights={weights}: not a torchxrayvision name; its DenseNet-121s: {', '.join(names)}")
    return xrv.models.DenseNet(weights=weights)  # from its cache; downloads when absent


def convert(weights: str, output: str) -> dict:
    """Writes xrv's DenseNet-121 `weights` (a name or a file) as a safetensors state dict at
    `output` (atomically), its pathology names in the file's metadata; returns what it wrote."""
    if not output.endswith(".safetensors"):
        raise UsageError(f"--output={output}: name a .safetensors file")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--output={output}: no directory {folder}")
    model = read_model(weights)
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items() if v.is_floating_point()}
    conv0 = state.get("features.conv0.weight")
    if conv0 is None or "features.denseblock4.denselayer16.conv2.weight" not in state:
        raise WeightsError(f"{weights}: not a DenseNet-121 (no features.conv0 ... denseblock4.denselayer16)")
    pathologies = [str(p) for p in getattr(model, "pathologies", [])]
    from safetensors.torch import save_file

    tmp = f"{output}.tmp-{os.getpid()}"
    save_file(state, tmp, metadata={"source": str(weights), "pathologies": json.dumps(pathologies)})
    os.replace(tmp, output)
    return {"output": output, "tensors": len(state), "in_channels": int(conv0.shape[1]), "pathologies": pathologies}


def command(argv: Sequence[str]) -> str:
    """`vkd-jax convert-xrv --weights=NAME_OR_FILE --output=FILE.safetensors`; returns the line to print."""
    parser = argparse.ArgumentParser(
        prog="vkd-jax convert-xrv",
        description="Convert a torchxrayvision DenseNet-121 checkpoint to safetensors for "
        "--config.model.image_encoder.init_from (needs torchxrayvision installed).",
    )
    parser.add_argument(
        "--weights",
        required=True,
        help="a torchxrayvision name (e.g. densenet121-res224-all, read from ~/.torchxrayvision/models_data/) "
        "or a checkpoint file; unpickled by torch: trusted files only",
    )
    parser.add_argument("--output", required=True, help="the .safetensors file to write")
    args = parser.parse_args(list(argv))
    done = convert(args.weights, args.output)
    mapped = [p for p in done["pathologies"] if p in XRV_TO_CHEXPERT]
    return (
        f"wrote {done['output']} ({done['tensors']} tensors, {done['in_channels']} input channel(s); its head's "
        f"{len([p for p in done['pathologies'] if p])} pathologies, {len(mapped)} of them CheXpert findings, "
        "are not used: VKD trains its own). Train from it: vkd-jax train --config=configs/torchxrayvision.py "
        f"--workdir=W --config.model.image_encoder.init_from={done['output']}"
    )
