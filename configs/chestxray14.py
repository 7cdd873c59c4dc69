"""The image-only baseline on NIH ChestX-ray14 (no reports), on its own 14 labels.

    python -m data_pipelines.build --dataset=chestxray14 --manual_dir=/path/to/nih \
        --data_dir=/path/to/tfds --image_size=224
    python run.py --config=configs/chestxray14.py --workdir=/path/to/workdir \
        --config.data.data_dir=/path/to/tfds

To score on the findings ChestX-ray14 shares with CheXpert instead (e.g. with a model
trained on MIMIC-CXR), use `--config.data.label_set=chexpert`: the other classes are
stored as not mentioned and masked out by the 'ignore' policy set here.
"""

from configs import default


def get_config():
    config = default.get_config()
    data = config.data
    data.name = "chestxray14"
    data.label_set = "nih"  # Its 14 NIH findings; 'chexpert': the shared ones only.
    data.uncertainty_policy = "ignore"  # NIH labels are 1/0; masks -2 under 'chexpert'.
    data.no_finding_rule = False  # The NIH classes have no 'No Finding'.
    data.chestxray14.val_fraction = 0.1
    data.chestxray14.split_seed = 0
    data.augment.rotation = 5.0
    data.augment.scale = 0.05
    data.augment.translate = 0.03
    data.augment.brightness = 0.05
    data.augment.contrast = 0.1

    config.model.kind = "image_only"
    # Reports are empty: the text encoder is unused, so a tiny local vocabulary will do.
    config.model.text_encoder.tokenizer = "synthetic"
    config.model.text_encoder.max_length = 8
    return config
