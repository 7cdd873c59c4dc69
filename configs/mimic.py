"""VKD on MIMIC-CXR with the paper's encoders: DenseNet-121 at 224 px, BERT-base, 256 tokens.

    python run.py --config=configs/mimic.py --workdir=/path/to/workdir \
        --config.model.text_encoder.tokenizer=/path/to/Bio_ClinicalBERT

Needs the `mimic_cxr` tensorflow-datasets build (see the README); without it the run stops
at once and says how to provide it.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.data.name = "mimic_cxr"
    return config
