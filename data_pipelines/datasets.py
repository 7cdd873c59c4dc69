"""The datasets `data.name` can name, and their tfds builders for a data config.

Importing this module registers the `mimic_cxr`, `openi`, `chestxray14` and `csv`
builders with tfds. A builder's config (its directory under `data_dir`) follows from the build
options, so training finds exactly the build the options describe.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from data_pipelines.chestxray14 import chestxray14
from data_pipelines.dataset_options import DATASET_OPTIONS
from data_pipelines.mimic_cxr import mimic_cxr
from data_pipelines.openi import openi
from data_pipelines.synthetic_cxr import synthetic_cxr
from data_pipelines.table import table

SYNTHETIC = "synthetic_cxr"
REAL = {
    "mimic_cxr": (mimic_cxr.MimicCxr, mimic_cxr.builder_config),
    "openi": (openi.OpenI, openi.builder_config),
    "chestxray14": (chestxray14.ChestXray14, chestxray14.builder_config),
    "csv": (table.Table, table.builder_config),
}
NAMES = (*REAL, SYNTHETIC)


def real_builder(
    name: str, *, image_size: int, data_dir: str | None, workers: int = 1, **options
) -> tfds.core.DatasetBuilder:
    """The builder of a real dataset for `image_size` and its dataset-specific `options`."""
    cls, make_config = REAL[name]
    return cls(config=make_config(image_size=image_size, **options), data_dir=data_dir, workers=workers)


def synthetic_builder(data_cfg, image_size: int) -> tfds.core.DatasetBuilder:
    s = data_cfg[DATASET_OPTIONS[SYNTHETIC]]
    config = synthetic_cxr.builder_config(
        image_size=image_size,
        num_train=s.num_train,
        num_validation=s.num_validation,
        num_test=s.num_test,
        seed=s.seed,
        image_signal=s.image_signal,
        noise=s.noise,
        label_noise=s.label_noise,
        strengths=s.strengths,
        mild_drop=s.mild_drop,
    )
    return synthetic_cxr.SyntheticCxr(config=config, data_dir=data_cfg.data_dir)


def builder(data_cfg) -> tfds.core.DatasetBuilder:
    """The builder `data_cfg` reads (not necessarily prepared).

    The stored size is `data.build_size`, or `data.image_size` when that is None; the
    dataset-specific options are the config section named after the dataset.
    """
    size = data_cfg.build_size or data_cfg.image_size
    if data_cfg.name == SYNTHETIC:
        return synthetic_builder(data_cfg, size)
    if data_cfg.name in REAL:
        return real_builder(
            data_cfg.name,
            image_size=size,
            data_dir=data_cfg.data_dir,
            **data_cfg[DATASET_OPTIONS[data_cfg.name]].to_dict(),
        )
    return tfds.builder(data_cfg.name, data_dir=data_cfg.data_dir)
