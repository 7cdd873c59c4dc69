"""The record format every builder writes (see docs/datasets.md)."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import labels as labels_lib


def record_info(
    builder, image_size: int, description: str, extra_features: dict | None = None, extra_metadata: dict | None = None
) -> tfds.core.DatasetInfo:
    """`DatasetInfo` with the shared features (square 8-bit gray `image`, `report`, raw
    int8 `labels` in `CLASS_NAMES` order, ids, `view`) plus a dataset's own."""
    return tfds.core.DatasetInfo(
        builder=builder,
        description=description,
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Image(shape=(image_size, image_size, 1), dtype=np.uint8, encoding_format="png"),
                "report": tfds.features.Text(),
                "labels": tfds.features.Tensor(shape=(labels_lib.NUM_CLASSES,), dtype=np.int8),
                "subject_id": tfds.features.Text(),
                "study_id": tfds.features.Text(),
                "image_id": tfds.features.Text(),
                "view": tfds.features.Text(),
                **(extra_features or {}),
            }
        ),
        metadata=tfds.core.MetadataDict(class_names=list(labels_lib.CLASS_NAMES), **(extra_metadata or {})),
    )
