"""VKD on MIMIC-CXR with the paper's encoders: DenseNet-121 at 224 px, BERT-base, 256 tokens.

    python -m data_pipelines.build --dataset=mimic_cxr --manual_dir=/path/to/mimic \
        --data_dir=/path/to/tfds --image_size=224
    python run.py --config=configs/mimic.py --workdir=/path/to/workdir \
        --config.data.data_dir=/path/to/tfds \
        --config.model.text_encoder.tokenizer=/path/to/Bio_ClinicalBERT

Needs the `mimic_cxr` tensorflow-datasets build (see docs/datasets.md); without it the run stops
at once and says how to provide it.
"""

from configs import default


def get_config():
    config = default.get_config()
    data = config.data
    data.name = "mimic_cxr"
    # The reference's labels: frontal views, uncertain and blank -> 0, No Finding rule.
    data.mimic_cxr.views = "frontal"
    data.mimic_cxr.labeler = "chexpert"
    data.mimic_cxr.sections = "findings_impression"
    data.uncertainty_policy = "zeros"
    data.no_finding_rule = True
    data.augment.rotation = 5.0
    data.augment.scale = 0.05
    data.augment.translate = 0.03
    data.augment.brightness = 0.05
    data.augment.contrast = 0.1
    return config
