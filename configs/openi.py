"""VKD on OpenI (Indiana University chest X-rays with reports), the paper's encoders.

    python -m data_pipelines.build --dataset=openi --manual_dir=/path/to/openi \
        --data_dir=/path/to/tfds --image_size=224
    python run.py --config=configs/openi.py --workdir=/path/to/workdir \
        --config.data.data_dir=/path/to/tfds \
        --config.model.text_encoder.tokenizer=/path/to/Bio_ClinicalBERT

Labels from the reports' MeSH terms (`data_pipelines/openi/mesh.py`); set
`data.openi.labels_csv` (and pass `--labels_csv` to the build) to use a labeler's CSV.
About 3,300 training images: small batches, validation once per epoch.
"""

from configs import mimic


def get_config():
    config = mimic.get_config()
    data = config.data
    data.name = "openi"
    data.openi.labels_csv = ""
    data.openi.split_seed = 0
    data.openi.sections = "findings_impression"
    data.shuffle_buffer = 8192
    return config
