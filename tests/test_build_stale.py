"""Stale data (issue 36): a build is not reused once an image under its unchanged table was
replaced, a kept preprocessing cache does not serve the old image's PNG, and an image that
is a symlink out of the image folder is named in the build report."""

import json
import os
import shutil

import numpy as np

from data_pipelines import build, datasets, image_cache, images
from tests.fabricate import common
from tests.test_table_strict import LABELS, OPTIONS, _tree

FLAGS = [f"--{k}={v}" for k, v in OPTIONS.items()]


def _build(manual_dir, data_dir, *flags):
    args = ["--dataset=csv", f"--manual_dir={manual_dir}", f"--data_dir={data_dir}", "--image_size=8", "--workers=1"]
    return build.main([*args, *FLAGS, *flags])


def _report(data_dir) -> dict:
    builder = datasets.real_builder("csv", image_size=8, data_dir=str(data_dir), **OPTIONS)
    with open(os.path.join(builder.data_dir, "build_report.json")) as f:
        return json.load(f)


def test_a_replaced_image_under_an_unchanged_table_is_not_mistaken_for_its_build(tmp_path, capsys):
    manual_dir, data_dir = tmp_path / "src", tmp_path / "tfds"
    _tree(str(manual_dir))
    assert _build(manual_dir, data_dir) == 0
    assert _build(manual_dir, data_dir) == 0  # unchanged: found built
    assert "is already built" in capsys.readouterr().out

    image = manual_dir / "images" / "img3.png"
    common.write(str(image), common.image_bytes(77, "PNG", size=(20, 20)))  # another size
    assert _build(manual_dir, data_dir) == 2
    err = capsys.readouterr().err
    assert f"error: images under {manual_dir} changed since" in err
    assert "(1 replaced (size or mtime): images/img3.png): delete that directory to rebuild" in err

    # The same bytes again but a new mtime (a copy without -p) is still a change: the stamp
    # is size and mtime, not a hash, so that the check is a stat per image.
    common.write(str(image), common.image_bytes(3, "PNG", size=(12, 12)))
    assert _build(manual_dir, data_dir) == 2
    assert "images/img3.png" in capsys.readouterr().err
    os.remove(image)  # Now skipped as missing: an image of the build is gone.
    assert _build(manual_dir, data_dir) == 2
    assert "1 gone: images/img3.png" in capsys.readouterr().err
    assert _report(data_dir)["sources"]["images"].startswith("30 files, sha1 ")


def test_a_kept_cache_preprocesses_a_replaced_image_again(tmp_path):
    manual_dir, data_dir = tmp_path / "src", tmp_path / "tfds"
    _tree(str(manual_dir))
    assert _build(manual_dir, data_dir, "--keep_cache") == 0
    builder = datasets.real_builder("csv", image_size=8, data_dir=str(data_dir), **OPTIONS)
    image = str(manual_dir / "images" / "img3.png")
    common.write(image, common.image_bytes(77, "PNG", size=(20, 20)))
    os.utime(image, ns=(1, 1))  # whatever the clock: another mtime than the first file's
    shutil.rmtree(builder.data_dir)  # The rebuild the error message asks for.
    assert _build(manual_dir, data_dir, "--keep_cache") == 0
    stored = {ex["image_id"]: ex["image"] for s in ("train", "validation", "test") for ex in _records(builder, s)}
    np.testing.assert_array_equal(stored[b"img3"], images.square_gray(image, 8))
    assert image_cache.is_cached(builder.cache_dir(), "img3", image)
    assert image_cache.is_cached(builder.cache_dir(), "img3", b"bytes: no file to compare")  # an archive's member


def _records(builder, split):
    return (
        datasets.real_builder("csv", image_size=8, data_dir=os.fspath(builder._data_dir_root), **OPTIONS)
        .as_dataset(split=split)
        .as_numpy_iterator()
    )


def test_a_symlink_out_of_the_image_root_is_kept_and_named(tmp_path, capsys):
    manual_dir, data_dir = tmp_path / "src", tmp_path / "tfds"
    outside = tmp_path / "elsewhere" / "secret.png"
    common.write(str(outside), common.image_bytes(60, "PNG", size=(12, 12)))
    labels = ",".join(LABELS)
    _tree(str(manual_dir), f"link.png,pl,clear,{labels}", f"inside.png,pi,clear,{labels}")
    os.symlink(outside, manual_dir / "images" / "link.png")
    os.symlink(manual_dir / "images" / "img0.png", manual_dir / "images" / "inside.png")  # within the root
    assert _build(manual_dir, data_dir) == 0
    out = capsys.readouterr().out
    assert "warning: 1 images linked from outside image_root, kept, e.g. t.csv line 32, column 'path'" in out
    report = _report(data_dir)
    assert report["warnings"] == {
        "images linked from outside image_root, kept": {
            "count": 1,
            "first": [f"t.csv line 32, column 'path': link.png -> {os.path.realpath(outside)}"],
        }
    }
    assert sum(report["examples"].values()) == 32 and report["skipped"] == {}
