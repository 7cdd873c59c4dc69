"""Source-file parsing of the real datasets: MIMIC report sections, OpenI XML and MeSH
labels, ChestX-ray14 label mapping, image resizing, CSV checks."""

import io

import numpy as np
import pytest
from PIL import Image

from data_pipelines import images, labels as L, manual_builder, source_files
from data_pipelines.mimic_cxr import sections
from data_pipelines.openi import mesh
from tests.fabricate import common


@pytest.mark.parametrize(
    "header, name",
    [
        ("IMPRESSION", "impression"),
        ("IMPRESSIONS", "impression"),
        ("CONCLUSION", "impression"),
        ("FINDINGS AND IMPRESSION", "impression"),
        ("IMPRESSON", "impression"),
        ("FINDINGS", "findings"),
        ("FINDNGS", "findings"),
        ("PA AND LATERAL VIEWS OF THE CHEST", "findings"),
        ("REASON FOR EXAM", "indication"),
        ("COMPARISONS", "comparison"),
        ("TECHNIQUE", "technique"),
    ],
)
def test_section_names_are_normalised(header, name):
    assert sections.normalise_name(header) == name


def test_findings_and_impression_are_extracted_and_unwrapped():
    text = (
        "                FINAL REPORT\n EXAMINATION:  CHEST\n \n FINDINGS:\n \n Lungs are\n"
        " clear.  ___ noted.\n \n IMPRESSION:\n \n No acute process.\n"
    )
    assert sections.extract(text) == "Lungs are clear. ___ noted. No acute process."
    assert sections.extract(text, "impression") == "No acute process."
    assert sections.extract(text, "findings") == "Lungs are clear. ___ noted."
    assert sections.extract(text, "full").startswith("FINAL REPORT EXAMINATION: CHEST FINDINGS:")


def test_the_last_of_repeated_sections_and_empty_ones_dropped():
    text = " FINDINGS:\n \n IMPRESSION: first\n \n FINDINGS: second findings\n IMPRESSION:\n \n"
    names = [n for n, _ in sections.split_sections("\n" + text)]
    assert names.count("impression") == 1 and names.count("findings") == 1
    assert sections.extract("\n" + text) == "second findings first"


def test_addendum_stays_out_of_the_impression():
    text = "\n IMPRESSION:\n No change.\n ____________________________\n Called Dr. ___ at 10.\n"
    assert sections.extract(text) == "No change."


def test_neither_section_falls_back_to_the_last_paragraph_then_comparison():
    assert sections.extract("\n COMPARISON: None.\n \n Clear lungs.\n \n Normal heart.\n") == (
        "Clear lungs. Normal heart."
    )
    assert sections.extract("\n COMPARISON: Prior study.\n") == "Prior study."
    assert sections.extract("no headers at all") == ""
    with pytest.raises(ValueError, match="sections"):
        sections.extract("x", "everything")


def test_openi_xml_without_parent_image_and_with_empty_findings():
    xml = (
        "<eCitation><uId id='CXR7'/><MedlineCitation><Article><Abstract>"
        "<AbstractText Label='FINDINGS'/><AbstractText Label='IMPRESSION'>No <b>acute</b>\n"
        " disease.</AbstractText></Abstract></Article></MedlineCitation>"
        "<MeSH><major>normal</major><automatic>Pneumothorax</automatic></MeSH></eCitation>"
    )
    report = mesh.parse_report(xml, fallback_uid="CXR0")
    assert report.uid == "CXR7" and report.images == []
    assert report.sections == {"FINDINGS": "", "IMPRESSION": "No acute disease."}
    assert mesh.report_text(report, "findings_impression") == "No acute disease."
    assert mesh.report_text(report, "findings") == "No acute disease."  # Falls back.
    assert report.mesh == ["normal", "Pneumothorax"]
    with pytest.raises(ValueError, match="CXR0"):
        mesh.parse_report("<not xml", fallback_uid="CXR0")


@pytest.mark.parametrize(
    "terms, positive",
    [
        (["normal"], {"No Finding"}),
        (["Cardiomegaly/mild", "Pulmonary Atelectasis/base/left"], {"Cardiomegaly", "Atelectasis"}),
        (["Mediastinum/widened", "Catheters, Indwelling"], {"Enlarged Cardiomediastinum", "Support Devices"}),
        (["normal", "Medical Device"], {"No Finding", "Support Devices"}),
        (["Calcified Granuloma/lung"], set()),  # Unmapped and abnormal: not "No Finding".
        (["Thickening/pleura/apex", "Opacity/lung/base"], {"Pleural Other", "Lung Opacity"}),
    ],
)
def test_mesh_terms_to_chexpert_labels(terms, positive):
    labels = mesh.mesh_labels(terms)
    assert labels.dtype == np.int8
    assert {c for c, v in zip(L.CLASS_NAMES, labels) if v == 1} == positive
    assert set(labels.tolist()) <= {0, 1}


def test_nih_labels_map_to_the_shared_chexpert_findings():
    labels, nih = L.nih_findings_to_labels({"Effusion", "Nodule"})
    assert [n for n, v in zip(L.NIH_CLASS_NAMES, nih) if v] == ["Effusion", "Nodule"]
    chexpert = dict(zip(L.CLASS_NAMES, labels))
    assert chexpert["Pleural Effusion"] == 1 and chexpert["No Finding"] == 0
    assert chexpert["Lung Lesion"] == L.NOT_MENTIONED  # Nodule is not mapped.
    shared = {L.NIH_TO_CHEXPERT[n] for n in L.NIH_TO_CHEXPERT}
    assert {c for c, v in chexpert.items() if v != L.NOT_MENTIONED} == shared
    labels, nih = L.nih_findings_to_labels({"No Finding"})
    assert not nih.any() and labels[L.NO_FINDING] == 1
    with pytest.raises(ValueError, match="Efusion"):
        L.nih_findings_to_labels({"Efusion"})
    assert L.class_names("nih") == L.NIH_CLASS_NAMES


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16"])
def test_images_become_square_gray_centre_crops(mode):
    data = common.image_bytes(0, "PNG", size=(60, 30), mode=mode)
    out = images.square_gray(data, 16)
    assert out.shape == (16, 16, 1) and out.dtype == np.uint8
    if mode == "L":  # Shorter side 30 -> 16; the centre 16 of the 32 columns kept.
        full = np.asarray(Image.open(io.BytesIO(data)).resize((32, 16), Image.Resampling.LANCZOS))
        np.testing.assert_array_equal(out[:, :, 0], full[:, 8:24])
    with pytest.raises(images.ImageError):
        images.square_gray(common.corrupt(common.image_bytes(0, "JPEG")), 16)


def test_csv_reader_handles_aliases_and_names_missing_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("A,Patient Sex,OriginalImage[Width,Height],\n1,F,10,20,\n")
    rows = source_files.read_csv(str(path), ["A", "Patient Gender"], {"Patient Sex": "Patient Gender"})
    assert rows == [{"A": "1", "Patient Gender": "F", "OriginalImage[Width": "10", "Height]": "20", "": ""}]
    with pytest.raises(ValueError, match=r"t\.csv.*\['B', 'C'\]"):
        source_files.read_csv(str(path), ["A", "B", "C"])


@pytest.mark.parametrize(
    "row, width, why",
    [("2,F,10,20,,extra", "4 to 5", "unquoted comma"), ("2,F,10", "4 to 5", "cells missing")],
)
def test_csv_reader_refuses_a_ragged_row_naming_its_line(tmp_path, row, width, why):
    path = tmp_path / "t.csv"
    path.write_text(f'A,Patient Sex,OriginalImage[Width,Height],\n1,F,10,20\n"3\nx",M,1,2,\n{row}\n')
    # Rows may leave out the header's trailing empty column (line 2); a quoted cell spans lines 3-4.
    with pytest.raises(ValueError, match=rf"t\.csv line 5: expected {width} cells as in the header, got \d+ \(.*{why}"):
        source_files.read_csv(str(path), ["A"])
    path.write_text("A,B\n1,2\n1,2,3\n")
    with pytest.raises(ValueError, match=r"t\.csv line 3: expected 2 cells as in the header, got 3"):
        source_files.read_csv(str(path), ["A"])


def test_seeded_split_is_stable_and_near_its_fractions():
    fractions = {"train": 0.7, "validation": 0.1, "test": 0.2}
    splits = [manual_builder.seeded_split(f"p{i}", 0, fractions) for i in range(3000)]
    assert splits == [manual_builder.seeded_split(f"p{i}", 0, fractions) for i in range(3000)]
    for split, fraction in fractions.items():
        assert abs(splits.count(split) / 3000 - fraction) < 0.03
    assert splits != [manual_builder.seeded_split(f"p{i}", 1, fractions) for i in range(3000)]


def test_a_study_whose_images_have_different_reports_is_rejected():
    def entry(image_id, study_id, report):
        return manual_builder.Entry(
            split="train",
            image_id=image_id,
            source="",
            subject_id="p",
            study_id=study_id,
            view="",
            report=report,
            labels=np.zeros(14, np.int8),
        )

    ok = [entry("a", "s1", "clear"), entry("b", "s1", "clear"), entry("c", "s2", "")]
    manual_builder._check_one_report_per_study(ok)
    with pytest.raises(ValueError, match="study 's1': images 'a' and 'd' have different reports"):
        manual_builder._check_one_report_per_study(ok + [entry("d", "s1", "effusion")])
