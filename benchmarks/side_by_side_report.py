"""What a side-by-side run reports: which anchor runs each JAX run is compared with (`BASELINE`),
the JAX/PyTorch ratios of samples/s (as `side_by_side.py`'s docstring defines them), and the
table it prints."""

from __future__ import annotations

# Each JAX variant is compared with these anchor runs (those that were run).
BASELINE = {
    "frozen": ("frozen", "frozen_eval"),
    "finetune": ("finetune",),
    "finetune_attn0": ("finetune",),
    "frozen_cached": ("frozen", "frozen_eval"),
    "image_only": ("frozen", "frozen_eval"),
}


def ratios(torch_lines, jax_lines, cuda: bool) -> list[dict]:
    out = []
    for j in jax_lines:
        if "samples_per_s" not in j:
            continue
        precision = "bf16" if j["dtype"] in ("bfloat16", "float16") else "fp32"
        for base in BASELINE[j["variant"]]:
            t = next(
                (
                    t
                    for t in torch_lines
                    if t["variant"] == base and t["precision"] == precision and "samples_per_s" in t
                ),
                None,
            )
            if t is None:
                continue
            jax_sps = j["samples_per_s_pipelined"] if cuda else j["samples_per_s"]
            out.append(
                dict(
                    side="ratio",
                    variant=j["variant"],
                    vs_torch=base,
                    precision=precision,
                    attention_impl=j.get("attention_impl"),
                    jax_samples_per_s=jax_sps,
                    torch_samples_per_s=t["samples_per_s"],
                    ratio=round(jax_sps / t["samples_per_s"], 3),
                    jax_peak_bytes_in_use=j.get("peak_bytes_in_use"),
                    jax_xla_peak_bytes=j.get("xla_peak_bytes"),
                    torch_peak_mem_gib=t.get("peak_mem_gib"),
                )
            )
    return out


def table(torch_lines, jax_lines, ratio_lines) -> str:
    def gib(b):
        return "-" if b is None else f"{b / 2**30:.2f}"

    def short(dtype):
        return {"bfloat16": "bf16", "float32": "fp32", "float16": "fp16"}.get(dtype, dtype)

    rows = [
        (
            f"{'side':6} {'variant':15} {'prec':5} {'attn':6} {'ms/step':>9} {'samples/s':>10} "
            f"{'GFLOP/smp':>9} {'TFLOP/s':>8} {'peak GiB':>9} {'xla GiB':>8} {'compile s':>9}"
        )
    ]
    for t in torch_lines:
        if "error" in t:
            rows.append(f"torch  {t['variant']:15} {t['precision']:5} error: {t['error'][:80]}")
            continue
        gflop = t.get("gflop_per_sample")
        gflop_text = "-" if gflop is None else f"{gflop:.2f}"
        tflops_text = "-" if gflop is None else f"{gflop * t['samples_per_s'] / 1e3:.3f}"
        rows.append(
            f"torch  {t['variant']:15} {t['precision']:5} {'-':6} {t['ms_per_step']:9.2f} "
            f"{t['samples_per_s']:10.1f} {gflop_text:>9} {tflops_text:>8} "
            f"{'-' if t.get('peak_mem_gib') is None else t['peak_mem_gib']:>9} {'-':>8} {'-':>9}"
        )
    for j in jax_lines:
        if "samples_per_s" not in j:
            why = j.get("error") or j.get("skipped")
            rows.append(f"jax    {j.get('variant', '?'):15} {short(j.get('dtype', '?')):5} {why}"[:160])
            continue
        rows.append(
            f"jax    {j['variant']:15} {short(j['dtype']):5} {j['attention_impl'] or '-':6} "
            f"{j['step_ms_median']:9.2f} {j['samples_per_s']:10.1f} {j['gflop_per_sample'] or 0:9.2f} "
            f"{j.get('tflops_achieved') or 0:8.3f} {gib(j['peak_bytes_in_use']):>9} "
            f"{gib(j['xla_peak_bytes']):>8} {j['compile_s']:9.1f}"
        )
    rows.append("")
    rows.append(f"{'ratio JAX/torch (samples/s)':28} {'variant':15} {'vs torch':11} {'prec':5} {'attn':6} {'ratio':>6}")
    for r in ratio_lines:
        rows.append(
            f"{'':28} {r['variant']:15} {r['vs_torch']:11} {r['precision']:5} "
            f"{r['attention_impl'] or '-':6} {r['ratio']:6.3f}"
        )
    return "\n".join(rows)
