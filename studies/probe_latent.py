"""What a trained model's representations carry: linear probes for the labels and the report's details.

    python -m studies.probe_latent --workdirs=RUN1,RUN2,...

For each training workdir on `synthetic_cxr` (any kind with an image encoder), ridge
readouts are fitted on the training split, their ridge strength chosen on validation, and
scored on the test split (macro AUROC), from:
- `h(x)`, the image encoder's features (compare a `vkd` run with an `image_only` run of the
  same seed: has distillation put more of the report into the image features?);
- `mu_p(x)`, the prior's mean (vkd), the latent used at test time;
- `mu_q(x, t)`, the posterior's mean (vkd): what the report gives the latent.
Targets: the 14 labels (as trained on), and the report's details that are not labels, which
the synthetic generator draws with every study (`findings.Detail`): the side (right or left)
of each lateralised finding that is present, whether it is moderate or severe rather than
mild, and which support devices are present. Prints a markdown table; writes nothing.
"""

from __future__ import annotations

import jax
import numpy as np
from absl import app, flags

from data_pipelines import input_pipeline
from data_pipelines.synthetic_cxr import findings, generator
from data_pipelines.tokenizer import load_tokenizer
from vkd_jax import metrics
from vkd_jax.models.vkd import VKDModel
from vkd_jax.runs import restore, workdir as wd

FLAGS = flags.FLAGS
flags.DEFINE_list("workdirs", None, "Training workdirs to probe.", required=True)
flags.DEFINE_integer("max_train", 4000, "Training examples the readouts are fitted on.")
RIDGE = (1e-1, 1e0, 1e1, 1e2, 1e3, 1e4)
SIDED = tuple(name for name in findings.FINDINGS if set(findings.SIDES.get(name, ())) >= {"right", "left"})


def detail_targets(image_ids, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(targets, mask, names) `[N, T]` of the report's details of each synthetic example."""
    names = (
        [f"{n}: right" for n in SIDED]
        + [f"{n}: not mild" for n in findings.FINDINGS]
        + [f"device: {d}" for d in findings.DEVICES]
    )
    y = np.zeros((len(image_ids), len(names)), np.float32)
    m = np.zeros_like(y)
    for i, image_id in enumerate(image_ids):
        index = int(image_id.rsplit("-", 1)[1])
        study = generator.study_of(index, seed=seed)
        present = {n for n in findings.FINDINGS if study.labels[findings.labels_lib.CLASS_NAMES.index(n)] in (1, -1)}
        col = 0
        for n in SIDED:
            side = study.details[n].side
            y[i, col], m[i, col] = side == "right", n in present and side in ("right", "left")
            col += 1
        for n in findings.FINDINGS:
            y[i, col], m[i, col] = study.details[n].severity > 0, n in present
            col += 1
        for d in findings.DEVICES:
            y[i, col], m[i, col] = d in study.details["Support Devices"].devices, "Support Devices" in present
            col += 1
    return y, m, names


def features(workdir: str, split: str, limit: int | None = None) -> dict[str, np.ndarray]:
    """The representations, labels and ids of up to `limit` examples of `split`."""
    config = wd.read_config(workdir)
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
    model, state, _, manager = restore.restore_best(config, workdir, wd.read_model_info(workdir), mesh)
    manager.close()
    variables = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    txt = config.model.text_encoder
    tokenizer = load_tokenizer(txt.tokenizer or txt.init_from, wd.tokenizer_dir(workdir))

    @jax.jit
    def represent(images, ids, attention):
        h = model.apply(variables, images, train=False, method=VKDModel.encode_image)
        out = {"h(x)": h}
        if model.kind == "vkd":
            out["mu_p(x)"] = model.apply(variables, h, train=False, method=lambda m, h, train: m.prior(h, train=train))[
                0
            ]
            if model.uses_text:
                g = model.apply(variables, ids, attention, train=False, method=VKDModel.encode_text)
                out["mu_q(x,t)"] = model.apply(variables, h, g, train=False, method=VKDModel._posterior)[0]
        return out

    rows: dict[str, list] = {}
    seen = 0
    for batch in input_pipeline.eval_batches(
        config.data, split, batch_size=128, tokenizer=tokenizer, max_length=txt.max_length
    ):
        keep = batch["mask"].astype(bool)
        out = jax.device_get(represent(batch["image"], batch["input_ids"], batch["attention_mask"]))
        out |= {"labels": batch["labels"], "label_mask": batch["label_mask"], "image_id": batch["image_id"]}
        for k, v in out.items():
            rows.setdefault(k, []).append(np.asarray(v)[keep])
        seen += int(keep.sum())
        if limit and seen >= limit:
            break
    data = {k: np.concatenate(v)[:limit] for k, v in rows.items()}
    data["seed"] = config.data.synthetic.seed
    return data


def ridge_fit(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, scale, weights) of a ridge readout from standardised `x` to every column of `y`."""
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = np.concatenate([(x - mean) / scale, np.ones((len(x), 1))], axis=1)
    reg = lam * np.eye(z.shape[1])
    reg[-1, -1] = 0.0
    return mean, scale, np.linalg.solve(z.T @ z + reg, z.T @ y)


def ridge_predict(fit, x: np.ndarray) -> np.ndarray:
    mean, scale, w = fit
    return np.concatenate([(x - mean) / scale, np.ones((len(x), 1))], axis=1) @ w


def probe(train, val, test, key: str, targets) -> float | None:
    """Test macro AUROC of the ridge readout of `key`, its strength chosen on validation."""
    (ytr, mtr), (yva, mva), (yte, mte) = (targets(d) for d in (train, val, test))
    best = None
    for lam in RIDGE:
        fit = ridge_fit(train[key], ytr * mtr, lam)
        auc = metrics.auroc_summary(yva, ridge_predict(fit, val[key]), [str(i) for i in range(yva.shape[1])], mva)[
            "macro_auc"
        ]
        if auc is not None and (best is None or auc > best[0]):
            best = (auc, fit)
    if best is None:
        return None
    return metrics.auroc_summary(yte, ridge_predict(best[1], test[key]), [str(i) for i in range(yte.shape[1])], mte)[
        "macro_auc"
    ]


def main(argv):
    del argv
    lines = [
        "| workdir | representation | labels: test macro AUROC | report details: test macro AUROC |",
        "|---|---|---|---|",
    ]
    for workdir in FLAGS.workdirs:
        train = features(workdir, "train", FLAGS.max_train)
        val, test = features(workdir, "validation"), features(workdir, "test")
        labels = lambda d: (d["labels"], d["label_mask"])  # noqa: E731
        details = lambda d: detail_targets(d["image_id"], d["seed"])[:2]  # noqa: E731
        for key in ("h(x)", "mu_p(x)", "mu_q(x,t)"):
            if key in train:
                a, b = probe(train, val, test, key, labels), probe(train, val, test, key, details)
                lines.append(f"| {workdir} | {key} | {a:.4f} | {b:.4f} |")
        print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
