"""VKD on CheXpert Plus (Stanford AIMI: CheXpert's images with their reports), through the
`csv` builder, with the paper's encoders.

    python -m data_pipelines.build --config=configs/chexpert_plus.py \
        --manual_dir=/path/to/chexpert_plus --data_dir=/path/to/tfds
    python run.py --config=configs/chexpert_plus.py --workdir=/path/to/workdir \
        --config.data.data_dir=/path/to/tfds \
        --config.model.text_encoder.tokenizer=/path/to/Bio_ClinicalBERT

The manual directory holds the release as downloaded and unpacked:
  DIR/df_chexpert_plus_240401.csv              one row per image: path_to_image, deid_patient_id,
                                               frontal_lateral, section_findings, section_impression, ...
  DIR/chexbert_labels/impression_fixed.json    JSON lines: path_to_image and the 14 CheXpert
                                               columns (1, 0, -1, null), CheXbert on the impression
  DIR/PNG/train/patient00001/study1/view1_frontal.png, ...  (the table lists them as .jpg)
If the PNG archive unpacked into PNG/PNG/, pass --image_root=PNG/PNG (and set
`--config.data.csv.image_root=PNG/PNG` when training).

Frontal views; the report is the findings and impression sections; a study is an image's
folder (patientN/studyM). The split is a seeded 70/10/20 split by patient: the release's
own `valid` split (about 200 patients) is too small for the intervals.
"""

from configs import mimic


def get_config():
    config = mimic.get_config()
    data = config.data
    data.name = "csv"
    data.csv.update(
        dict(
            table="df_chexpert_plus_240401.csv",
            tag="chexpert_plus",
            image_column="path_to_image",
            image_root="PNG",
            image_extension=".png",
            report_columns="section_findings,section_impression",
            labels_table="chexbert_labels/impression_fixed.json",
            patient_column="deid_patient_id",
            study_column=":folder",
            view_column="frontal_lateral",
            views="Frontal",
            split_column="",
            split_seed=0,
            val_fraction=0.1,
            test_fraction=0.2,
        )
    )
    return config
