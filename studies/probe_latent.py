"""What a trained model's representations carry: linear probes for the labels and the report's details.

    python -m studies.probe_latent --workdirs=RUN1,RUN2,...

For each training workdir on `synthetic_cxr` (any kind with an image encoder), ridge
readouts are fitted on the first half of the test split, their ridge strength chosen on the
validation split, and scored on the second half of the test split (macro AUROC over the
targets of a group), from:
- `h(x)`, the image encoder's features (compare a `vkd` run with an `image_only` run of the
  same seed: has training put more of the report into the image features?);
- `mu_p(x)`, the prior's mean (vkd), the latent used at test time;
- `mu_q(x, t)`, the posterior's mean (vkd): what the report gives the latent;
- `g(t)`, the report features the posterior reads (a run with a text encoder): the ceiling,
  what a readout of the report itself reaches.
Targets: the 14 labels (as trained on), and the report's details as its text states them
(`data_pipelines/synthetic_cxr/report_details.py`, the facts the details methods learn):
the side of each finding, its lung zone, its severity, the fractured rib and the devices,
each bit scored only on the examples whose report states it. The readouts are fitted on
test images: the representations are frozen, and the training split of a small cell has
too few stated ribs or zones to fit on. Prints a markdown table; writes nothing.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from absl import app, flags, logging

from data_pipelines import input_pipeline, progress as progress_lib
from data_pipelines.synthetic_cxr import report_details
from data_pipelines.tokenizer import load_tokenizer
from vkd_jax import metrics
from vkd_jax.models.vkd import VKDModel
from vkd_jax.runs import log, report_details as details_table, restore, workdir as wd

FLAGS = flags.FLAGS
flags.DEFINE_list("workdirs", None, "Training workdirs to probe.", required=True)
RIDGE = (1e-1, 1e0, 1e1, 1e2, 1e3, 1e4)
REPRESENTATIONS = ("h(x)", "mu_p(x)", "mu_q(x,t)", "g(t)")


def _group(name: str) -> str | None:
    """The group of a detail of `report_details.DETAIL_NAMES` ("side", "zone", ...); None
    for a finding's "present" bit (the labels' business)."""
    fact = name.split(": ", 1)[1]
    if fact == "present":
        return None
    if fact in ("right", "left"):
        return "side"
    if fact in ("upper", "lower"):
        return "zone"
    if fact.endswith(" rib"):
        return "rib"
    if name.startswith("Support Devices: "):
        return "devices"
    return "severity"


GROUPS = ("side", "zone", "severity", "rib", "devices")
COLUMNS = {g: np.array([_group(n) == g for n in report_details.DETAIL_NAMES]) for g in GROUPS}


def features(workdir: str, split: str, limit: int | None = None) -> dict[str, np.ndarray]:
    """The representations, labels, report details (`report_details`, `report_details_mask`)
    and ids of up to `limit` examples of `split`."""
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
        if model.uses_text:
            out["g(t)"] = model.apply(variables, ids, attention, train=False, method=VKDModel.encode_text)
        return out

    split_size = input_pipeline.prepare(config.data).num_examples[split]
    stated = details_table.build(config, split_size, split)

    rows: dict[str, list] = {}
    seen = 0
    batches = input_pipeline.eval_batches(
        config.data, split, batch_size=128, tokenizer=tokenizer, max_length=txt.max_length
    )
    total = -(-min(split_size, limit or split_size) // 128)
    for batch in progress_lib.track(batches, log.progress(f"represented {split}", total, "batches")):
        keep = batch["mask"].astype(bool)
        batch = stated.add_to(batch)
        out = jax.device_get(represent(batch["image"], batch["input_ids"], batch["attention_mask"]))
        out |= {k: batch[k] for k in ("labels", "label_mask", "image_id", "report_details", "report_details_mask")}
        for k, v in out.items():
            rows.setdefault(k, []).append(np.asarray(v)[keep])
        seen += int(keep.sum())
        if limit and seen >= limit:
            break
    return {k: np.concatenate(v)[:limit] for k, v in rows.items()}


def ridge_fit(
    x: np.ndarray, y: np.ndarray, lam: float, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, scale, weights) of a ridge readout from standardised `x` to every column of `y`;
    with `mask` `[N, T]`, each column is fitted on its own unmasked rows only."""
    return ridge_fits(x, y, (lam,), mask)[0]


def ridge_fits(
    x: np.ndarray, y: np.ndarray, lams, mask: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`ridge_fit` at every strength of `lams`, sharing the work: the columns stated on the
    same rows (a finding's two sides, its two zones) are one multi-column solve, and each
    set of rows builds its Gram matrix once for all strengths."""
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = np.concatenate([(x - mean) / scale, np.ones((len(x), 1))], axis=1)
    mask = np.ones(y.shape, bool) if mask is None else mask > 0
    weights = [np.zeros((z.shape[1], y.shape[1])) for _ in lams]
    regs = [lam * np.eye(z.shape[1]) for lam in lams]
    for reg in regs:
        reg[-1, -1] = 0.0  # the intercept is not penalised
    by_rows: dict[bytes, list[int]] = {}
    for t in range(y.shape[1]):
        if mask[:, t].any():
            by_rows.setdefault(np.packbits(mask[:, t]).tobytes(), []).append(t)
    for cols in by_rows.values():
        m = mask[:, cols[0]]
        zm, ym = z[m], y[m][:, cols]
        if len(zm) >= z.shape[1]:
            gram, zty = zm.T @ zm, zm.T @ ym
            for w, reg in zip(weights, regs):
                w[:, cols] = np.linalg.solve(gram + reg, zty)
        else:  # fewer rows than features: the same ridge solved in its n x n dual
            for w, lam in zip(weights, lams):
                w[:, cols] = _dual_ridge(zm, ym, lam)
    return [(mean, scale, w) for w in weights]


def _dual_ridge(z: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """The primal ridge solution (last column of `z` the unpenalised intercept) from an n x n
    solve: centring removes the intercept, `w = Z^T (Z Z^T + lam I)^-1 y` gives the rest.
    `y` is `[n]` or `[n, T]` (T columns on the same rows)."""
    x = z[:, :-1]
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc = x - x_mean
    w = xc.T @ np.linalg.solve(xc @ xc.T + lam * np.eye(len(xc)), y - y_mean)
    return np.concatenate([w, (y_mean - x_mean @ w)[None]])


def ridge_predict(fit, x: np.ndarray) -> np.ndarray:
    mean, scale, w = fit
    return np.concatenate([(x - mean) / scale, np.ones((len(x), 1))], axis=1) @ w


def probe(fit_on, val, score_on, key: str, targets) -> float | None:
    """Macro AUROC on `score_on` of the ridge readout of `key` fitted on `fit_on`, its strength
    chosen on `val`; `targets(data)` gives (targets, mask) `[N, T]`."""
    (yf, mf), (yv, mv), (ys, ms) = (targets(d) for d in (fit_on, val, score_on))
    names = [str(i) for i in range(yf.shape[1])]
    best = None
    for fit in ridge_fits(fit_on[key], yf, RIDGE, mf):
        auc = metrics.auroc_summary(yv, ridge_predict(fit, val[key]), names, mv)["macro_auc"]
        if auc is not None and (best is None or auc > best[0]):
            best = (auc, fit)
    if best is None:
        return None
    return metrics.auroc_summary(ys, ridge_predict(best[1], score_on[key]), names, ms)["macro_auc"]


def halves(data: dict) -> tuple[dict, dict]:
    """The first and second half of a split's rows."""
    n = len(data["image_id"]) // 2
    return ({k: v[:n] for k, v in data.items()}, {k: v[n:] for k, v in data.items()})


def targets_of(group: str):
    """(targets, mask) of `group`: the labels, or one group of the report's details."""
    if group == "labels":
        return lambda d: (d["labels"], d["label_mask"])
    cols = COLUMNS[group]
    return lambda d: (d["report_details"][:, cols], d["report_details_mask"][:, cols])


def probe_table(workdirs) -> str:
    """The markdown table of every representation of every workdir."""
    groups = ("labels", *GROUPS)
    lines = [
        "| workdir | representation | " + " | ".join(groups) + " |",
        "|---" * (len(groups) + 2) + "|",
    ]
    for workdir in workdirs:
        logging.info("probing %s: the representations of the validation and test splits...", workdir)
        val = features(workdir, "validation")
        fit_on, score_on = halves(features(workdir, "test"))
        for key in REPRESENTATIONS:
            if key in val:
                logging.info("probing %s: readouts of %s (%d features)...", workdir, key, val[key].shape[1])
                cells = []
                for g in groups:
                    start = time.monotonic()
                    auc = probe(fit_on, val, score_on, key, targets_of(g))
                    cells.append("n/a" if auc is None else f"{auc:.3f}")
                    logging.info("  %s: %s in %.1fs", g, cells[-1], time.monotonic() - start)
                cells = " | ".join(cells)
                lines.append(f"| {workdir} | {key} | {cells} |")
                print(lines[-1], flush=True)
    return "\n".join(lines)


def main(argv):
    del argv
    print(probe_table(FLAGS.workdirs))


if __name__ == "__main__":
    app.run(main)
