"""tf.data input pipeline: built tfds records -> host batches of numpy arrays.

Every batch is a dict with exactly
  `image`           float32 [B, H, W, C], C = `data.channels` (the gray image repeated),
                    normalised `(x / 255 - mean) / std` with the statistics of
                    `data.normalization` (`preprocess.normaliser`: `data.mean`/`data.std`,
                    ImageNet's per channel, or torchxrayvision's [-1024, 1024]);
  `input_ids`       int32 [B, L], the report tokenised to `max_length`;
  `attention_mask`  int32 [B, L];
  `labels`          float32 [B, 14], targets after the uncertainty policy, of the
                    `data.label_set` (CheXpert's 14, or ChestX-ray14's own);
  `label_mask`      float32 [B, 14], 0 where a label is left out of the loss;
  `mask`            float32 [B], 1 for real examples, 0 for padding (eval only);
  `study_id`        int64 [B], host only: `study_keys` of the records' study ids (padding
                    rows: the key of ""), which key the text-feature cache
                    (`vkd_jax.runs.text_cache`) and group a study's images for the bootstrap;
and eval batches also carry `image_id` (numpy str [B], host only; "" for padding).

Training batches are augmented when `data.augment` asks (`augment.py`); eval never is.
`B` is the per-process batch: each process reads its own shard of a split. Reports are
tokenised on the host after batching (the fast tokenizers batch well, and tf.data has no
HF tokenizer); report text is never logged.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from data_pipelines import augment as augment_lib, datasets, labels as labels_lib, preprocess

SYNTHETIC = datasets.SYNTHETIC
_FEATURES = ("image", "report", "labels", "image_id", "study_id")
# ImageNet RGB statistics (owned by `preprocess`, the numpy port of the eval path).
IMAGENET_MEAN = preprocess.IMAGENET_MEAN
IMAGENET_STD = preprocess.IMAGENET_STD


def _hide_gpus_from_tensorflow() -> None:
    # TF would otherwise reserve accelerator memory that JAX needs.
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TF devices already initialised by someone else; nothing to do.
        pass


_hide_gpus_from_tensorflow()


@dataclasses.dataclass(frozen=True)
class DatasetMeta:
    """What the training loop needs to know about a built dataset."""

    name: str
    num_examples: dict[str, int]  # Split name -> number of examples (all processes).
    class_names: tuple[str, ...]
    image_size: int  # Size of the batches' images (after any resize).
    channels: int = 1  # Channels of the batches' images.
    stored_image_size: int = 0  # Size of the records' images (the build's `--image_size`).


def _not_built(data_cfg, looked_in: str | None = None) -> FileNotFoundError:
    looked_in = looked_in or data_cfg.data_dir or ("tfds's default data_dir (~/tensorflow_datasets, or $TFDS_DATA_DIR)")
    return FileNotFoundError(
        f"Dataset {data_cfg.name!r} is not built in {looked_in}. Build it from the source "
        f"files with `python -m data_pipelines.build --dataset={data_cfg.name} "
        f"--manual_dir=DIR --data_dir=DIR`, or point data.data_dir at where it was built."
    )


def _builder(data_cfg) -> tfds.core.DatasetBuilder:
    """The tfds builder of `data_cfg` (not necessarily prepared)."""
    try:
        return datasets.builder(data_cfg)
    except tfds.core.registered.DatasetNotFoundError:
        raise _not_built(data_cfg) from None


def _prepared_builder(data_cfg) -> tfds.core.DatasetBuilder:
    builder = _builder(data_cfg)
    if not builder.is_prepared():
        raise _not_built(data_cfg, str(builder.data_dir))
    metadata = builder.info.metadata or {}
    class_names = tuple(metadata.get("class_names", labels_lib.CLASS_NAMES))
    if class_names != labels_lib.CLASS_NAMES:
        raise ValueError(
            f"{data_cfg.name}: stored class order {class_names} differs from data_pipelines.labels.CLASS_NAMES"
        )
    if _label_key(data_cfg) not in builder.info.features:
        raise ValueError(
            f"data.label_set={data_cfg.label_set!r} needs a "
            f"'{_label_key(data_cfg)}' feature, which {data_cfg.name} lacks"
        )
    return builder


def _label_key(data_cfg) -> str:
    """The record feature holding the labels of `data.label_set`."""
    return "nih_labels" if data_cfg.label_set == "nih" else "labels"


def prepare(data_cfg: ml_collections.ConfigDict) -> DatasetMeta:
    """Makes sure the dataset is built (generating `synthetic_cxr` if need be). `data_cfg`
    is a checked config's data section (`vkd_jax.runs.config_checks.validate`)."""
    if data_cfg.name == SYNTHETIC:
        builder = _builder(data_cfg)
        if not builder.is_prepared():
            print(f"Generating {SYNTHETIC}/{builder.builder_config.name} in {builder.data_dir}")
            tfds.disable_progress_bar()  # cursor codes in a log; the builder prints plain lines
            builder.download_and_prepare()
    builder = _prepared_builder(data_cfg)
    return DatasetMeta(
        name=data_cfg.name,
        num_examples={name: s.num_examples for name, s in builder.info.splits.items()},
        class_names=labels_lib.class_names(data_cfg.label_set),
        image_size=data_cfg.image_size,
        channels=data_cfg.channels,
        stored_image_size=_stored_size(builder),
    )


def _read(builder, data_cfg, split):
    """Every record of `split`, in order, with encoded images; and their number.

    Each process reads all of a split and keeps its own slice of every global batch
    (`_process_slice`), so batches do not depend on the number of processes."""
    ds = builder.as_dataset(
        split=split,
        shuffle_files=False,
        decoders={"image": tfds.decode.SkipDecoding()},  # Decode after any skip.
        read_config=tfds.ReadConfig(try_autocache=False),
    )
    label_key = _label_key(data_cfg)
    ds = ds.map(lambda ex: {k: ex[label_key if k == "labels" else k] for k in _FEATURES})
    return ds, builder.info.splits[split].num_examples


def _process_slice(ds, batch_size: int, process_index: int, process_count: int):
    """Records -> this process's rows: the `process_index`-th contiguous `batch_size` rows of
    every global batch of `batch_size * process_count` (a shorter last batch gives the later
    processes fewer rows, or none)."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    if process_count == 1:
        return ds
    return ds.batch(batch_size).shard(process_count, process_index).unbatch()


def _decode_fn(data_cfg, stored_size: int, train: bool = False):
    """Decodes, resizes (if the stored size differs) and augments (`train` only) one
    example's image -> float32 [H, W, 1] in [0, 255]. Training examples carry `aug_seed`."""
    size = data_cfg.image_size
    aug_cfg = data_cfg.augment
    augment = train and augment_lib.is_enabled(aug_cfg)

    def decode(ex):
        ex = dict(ex)
        seed = ex.pop("aug_seed", None)
        image = tf.io.decode_image(ex["image"], channels=1, expand_animations=False)
        image = tf.cast(tf.ensure_shape(image, [stored_size, stored_size, 1]), tf.float32)
        if stored_size != size:
            image = tf.image.resize(image, [size, size], antialias=True)
        if augment:
            image = augment_lib.augment(image, seed, aug_cfg)
        return ex | {"image": image}

    return decode


def _normalise_fn(data_cfg):
    """Repeats the gray channel and normalises a batch of images [B, H, W, 1] in [0, 255].

    Applied after batching: one vectorised op per batch is cheaper than one per example,
    which matters most for 3-channel 224-px images.
    """
    channels = data_cfg.channels
    mean, std = (tf.constant(v) for v in preprocess.normaliser(data_cfg))  # float32, as the Predictor's

    def normalise(batch):
        image = batch["image"]
        if channels != 1:
            image = tf.repeat(image, channels, axis=-1)
        return batch | {"image": (image / 255.0 - mean) / std}

    return normalise


def _options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    return options


def study_keys(study_ids: Iterable[str | bytes]) -> np.ndarray:
    """Stable int64 keys of study ids: the first 8 bytes of each id's SHA-1, read as a
    little-endian signed integer (about a microsecond per id; a fixed function of the id
    text, so keys saved on disk stay valid). Only their equality matters."""
    digests = (hashlib.sha1(i if isinstance(i, bytes) else i.encode()).digest()[:8] for i in study_ids)
    return np.frombuffer(b"".join(digests), "<i8").astype(np.int64)


def _tokens(reports, pad: int, tokenizer, max_length: int) -> dict[str, np.ndarray]:
    """`input_ids` and `attention_mask` int32 [len(reports) + pad, max_length] of the
    records' report bytes. Padding rows get an empty report: its [CLS] [SEP] keeps their
    attention unmasked."""
    texts = [r.decode("utf-8") for r in reports] + [""] * pad
    tokens = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="np")
    return {k: tokens[k].astype(np.int32) for k in ("input_ids", "attention_mask")}


def _host_batch(batch, data_cfg, tokenizer, max_length: int, batch_size: int) -> dict:
    """Tokenises, applies the label policy, keys the study ids and pads a tf.data batch to
    `batch_size` rows."""
    n = len(batch["report"])
    pad = batch_size - n
    tokens = _tokens(batch["report"], pad, tokenizer, max_length)
    raw = np.concatenate([batch["labels"], np.full((pad, labels_lib.NUM_CLASSES), labels_lib.NOT_MENTIONED, np.int8)])
    targets, label_mask = labels_lib.apply_uncertainty_policy(
        raw, data_cfg.uncertainty_policy, data_cfg.no_finding_rule
    )
    mask = (np.arange(batch_size) < n).astype(np.float32)
    image = np.asarray(batch["image"], np.float32)
    if pad:  # Eval only; a training batch is never copied (3-channel 224-px batches are big).
        image = np.concatenate([image, np.zeros((pad,) + image.shape[1:], np.float32)])
    return {
        "image": image,
        **tokens,
        "labels": targets * mask[:, None],
        "label_mask": label_mask * mask[:, None],
        "mask": mask,
        "study_id": study_keys(list(batch["study_id"]) + [b""] * pad),
    }


def _epoch_seed(seed: int, epoch):
    """A shuffle seed (int64 scalar tensor) that is a fixed function of (seed, epoch)."""
    pair = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.stateless_uniform([], pair, minval=0, maxval=2**31 - 1, dtype=tf.int64)


def train_batches(
    data_cfg: ml_collections.ConfigDict,
    *,
    batch_size: int,
    tokenizer,
    max_length: int,
    seed: int,
    start_step: int = 0,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Endless training batches of `batch_size` (per process), epoch after epoch.

    The global batch is `batch_size * process_count` rows. Epoch `e` is the whole split
    shuffled with a seed derived from `(seed, e)`, cut to whole global batches; process `p`
    gets the `p`-th contiguous slice of each (`Dataset.shard` over per-process batches of
    the shuffled records, before decoding: every process reads every record's bytes but
    decodes only its own). So the global batches, and training, are the same for any
    number of processes. `start_step=k` yields exactly what an uninterrupted iterator yields
    from its k-th batch on, skipping records before their images are decoded. (tf.data
    mixes TF's global seed into shuffles; nothing here may call `tf.random.set_seed`.)
    """
    builder = _prepared_builder(data_cfg)
    ds, num_examples = _read(builder, data_cfg, data_cfg.train_split)
    global_batch = batch_size * process_count
    steps_per_epoch = num_examples // global_batch
    if steps_per_epoch == 0:
        raise ValueError(
            f"{data_cfg.train_split} has {num_examples} examples, fewer than one global batch of {global_batch}"
        )
    start_epoch, offset = divmod(start_step, steps_per_epoch)

    def epoch(e):
        shuffled = ds.shuffle(data_cfg.shuffle_buffer, seed=_epoch_seed(seed, e), reshuffle_each_iteration=False)
        # Augmentation seed: a fixed function of (seed, epoch, position in the epoch).
        return (
            shuffled.take(steps_per_epoch * global_batch)
            .enumerate()
            .map(lambda i, ex: ex | {"aug_seed": tf.stack([_epoch_seed(seed, e), i])})
        )

    stream = tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max).flat_map(epoch)
    stream = stream.skip(offset * global_batch)
    stream = _process_slice(stream, batch_size, process_index, process_count)
    stream = stream.map(_decode_fn(data_cfg, _stored_size(builder), train=True), num_parallel_calls=tf.data.AUTOTUNE)
    stream = stream.batch(batch_size, drop_remainder=True)
    stream = stream.map(_normalise_fn(data_cfg), num_parallel_calls=tf.data.AUTOTUNE)
    stream = stream.prefetch(tf.data.AUTOTUNE)
    for batch in stream.with_options(_options()).as_numpy_iterator():
        yield _host_batch(batch, data_cfg, tokenizer, max_length, batch_size)


def eval_batches(
    data_cfg: ml_collections.ConfigDict,
    split: str,
    *,
    batch_size: int,
    tokenizer,
    max_length: int,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Every example of `split` once, in order, in padded batches of `batch_size` per process.

    Global batches of `batch_size * process_count` rows, process `p` holding the `p`-th
    slice of each (see `train_batches`), so what each device sees is the same for any
    number of processes. All processes yield the same number of batches, so collective
    steps stay in lockstep; padding rows have `mask` 0, an empty report and image id, and
    the study key of "".
    """
    builder = _prepared_builder(data_cfg)
    ds, num_examples = _read(builder, data_cfg, split)
    ds = _process_slice(ds, batch_size, process_index, process_count)
    ds = ds.map(_decode_fn(data_cfg, _stored_size(builder)), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size).map(_normalise_fn(data_cfg), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE).with_options(_options())
    num_batches = -(-num_examples // (batch_size * process_count))
    batches = ds.as_numpy_iterator()
    for _ in range(num_batches):
        batch = next(batches, None)
        if batch is None:  # This shard is shorter: a batch of padding only.
            batch = _empty_batch(data_cfg, _stored_size(builder))
        out = _host_batch(batch, data_cfg, tokenizer, max_length, batch_size)
        ids = [i.decode("utf-8") for i in batch["image_id"]]
        yield out | {"image_id": np.array(ids + [""] * (batch_size - len(ids)))}


def report_batches(
    data_cfg: ml_collections.ConfigDict, split: str, *, batch_size: int, tokenizer, max_length: int
) -> Iterator[dict[str, np.ndarray]]:
    """The reports of `split` as `eval_batches` (one process) carries them, reading no image:
    `input_ids`, `attention_mask`, `study_id` and `image_id` of padded batches of
    `batch_size` (what the text-feature cache keys and encodes)."""
    for batch in _report_records(data_cfg, split, batch_size):
        pad = batch_size - len(batch["report"])
        ids = [i.decode("utf-8") for i in batch["image_id"]] + [""] * pad
        yield _tokens(batch["report"], pad, tokenizer, max_length) | {
            "study_id": study_keys(list(batch["study_id"]) + [b""] * pad),
            "image_id": np.array(ids),
        }


def report_texts(data_cfg: ml_collections.ConfigDict, split: str, *, batch_size: int = 1024) -> Iterator[dict]:
    """The report text of every example of `split`, in order, reading no image: dicts of
    `report` (list of str) and `study_id` (int64 `study_keys`) of up to `batch_size` rows
    (what the report-details table parses)."""
    for batch in _report_records(data_cfg, split, batch_size):
        yield {"report": [r.decode("utf-8") for r in batch["report"]], "study_id": study_keys(list(batch["study_id"]))}


def _report_records(data_cfg, split: str, batch_size: int) -> Iterator[dict]:
    """Batches of the records' `report`, `study_id` and `image_id` bytes, without images."""
    builder = _prepared_builder(data_cfg)
    ds = builder.as_dataset(
        split=split,
        shuffle_files=False,
        decoders=tfds.decode.PartialDecoding({"report": True, "study_id": True, "image_id": True}),
        read_config=tfds.ReadConfig(try_autocache=False),
    )
    yield from ds.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(_options()).as_numpy_iterator()


def image_batches(data_cfg: ml_collections.ConfigDict, stored: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Images as a build stores them (uint8 [N, S, S, 1], e.g. the user's own, read by
    `data_pipelines.user_images`) -> float32 batches [<= batch_size, H, W, C] preprocessed
    exactly as eval batches are (the same decode, resize and normalisation functions).
    Prediction uses `preprocess.eval_images`, its numpy port; this is the reference the
    port is tested against."""
    from data_pipelines import images  # PIL; the records hold PNGs, so these do too

    if not len(stored):
        return
    pngs = tf.constant([images.encode_png(x) for x in stored], tf.string)
    ds = tf.data.Dataset.from_tensor_slices({"image": pngs}).map(_decode_fn(data_cfg, stored.shape[1]))
    ds = ds.batch(batch_size).map(_normalise_fn(data_cfg))
    for batch in ds.with_options(_options()).as_numpy_iterator():
        yield batch["image"]


def _empty_batch(data_cfg, stored_size: int) -> dict:
    size = data_cfg.image_size
    channels = data_cfg.channels
    return {
        "image": np.zeros((0, size, size, channels), np.float32),
        "report": [],
        "labels": np.zeros((0, labels_lib.NUM_CLASSES), np.int8),
        "image_id": [],
        "study_id": [],
    }


def _stored_size(builder) -> int:
    return builder.info.features["image"].shape[0]


def label_prevalence(data_cfg: ml_collections.ConfigDict, split: str = "train") -> np.ndarray:
    """Fraction of positive targets per class, float32 [14], after the uncertainty policy.

    Over the examples whose label is kept (`label_mask` 1); reads labels only.
    """
    builder = _prepared_builder(data_cfg)
    key = _label_key(data_cfg)
    ds = builder.as_dataset(split=split, decoders=tfds.decode.PartialDecoding({key: True}))
    raw = np.concatenate(
        [np.zeros((0, labels_lib.NUM_CLASSES), np.int8)] + [b[key] for b in ds.batch(8192).as_numpy_iterator()]
    )
    targets, mask = labels_lib.apply_uncertainty_policy(raw, data_cfg.uncertainty_policy, data_cfg.no_finding_rule)
    return ((targets * mask).sum(0) / np.maximum(mask.sum(0), 1)).astype(np.float32)
