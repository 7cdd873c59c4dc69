"""benchmarks/profile_step.py and op_kinds.py: what an op is, and where the time went, on known programs."""

import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import pytest

from benchmarks import op_kinds
from tests.e2e import FAST_XLA

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def ps():
    from benchmarks import profile_step

    return profile_step


def _program(x, w, m):
    with jax.named_scope("image_encoder"):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        y = jnp.concatenate([x, jax.nn.relu(y)], axis=-1)
    with jax.named_scope("text_encoder"):
        t = jnp.tanh(m @ m.T)
    return y.mean() + t.sum()


def _compiled():
    args = (jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 4)), jnp.ones((16, 32)))
    return jax.jit(_program).lower(*args).compile(), args


def test_hlo_index_names_convolution_matmul_and_parts():
    compiled, _ = _compiled()
    index = op_kinds.parse_hlo(compiled.as_text())
    kinds = {info["kind"] for info in index.values()}
    assert {"convolution", "matmul"} <= kinds, kinds
    conv = [info for info in index.values() if info["kind"] == "convolution"]
    dot = [info for info in index.values() if info["kind"] == "matmul"]
    assert all(op_kinds.part_of(i["op_name"])[0] == "image_encoder" for i in conv), conv
    assert all(op_kinds.part_of(i["op_name"])[0] == "text_encoder" for i in dot), dot


def test_hlo_parser_reads_tuple_types_and_headers_with_index_comments():
    text = """HloModule m

%body.1 (arg_tuple.2: (s32[], f32[2], f32[2], f32[2], f32[2], /*index=5*/f32[2])) -> (s32[], f32[2]) {
  %arg_tuple.2 = (s32[], f32[2]{0}, /*index=5*/f32[2]{0}) parameter(0)
  %copy.7 = f32[2]{0} copy(%arg_tuple.2), metadata={op_name="jit(f)/while/body/copy"}
  ROOT %t = (s32[], f32[2]{0}) tuple(%arg_tuple.2, %copy.7)
}

%fused_computation.3 (param_0: f32[4,4], param_1: f32[4,4]) -> f32[4,4] {
  %param_0 = f32[4,4]{1,0} parameter(0)
  %param_1 = f32[4,4]{1,0} parameter(1)
  ROOT %dot.1 = f32[4,4]{1,0} dot(%param_0, %param_1), lhs_contracting_dims={1}, rhs_contracting_dims={0}, metadata={op_name="jit(f)/transpose(jvp(VKDModel))/text_encoder/dot_general"}
}

ENTRY %main.9 (a: f32[4,4], /*index=1*/b: f32[4,4]) -> (f32[4,4], f32[2]) {
  %a = f32[4,4]{1,0} parameter(0)
  %b = f32[4,4]{1,0} parameter(1)
  %ar.1 = (f32[4,4]{1,0}, /*index=1*/f32[4,4]{1,0}) all-reduce(%a, %b), replica_groups={{0}}, to_apply=%add
  %fusion.4 = f32[4,4]{1,0} fusion(%a, %b), kind=kOutput, calls=%fused_computation.3
  ROOT %out = (f32[4,4]{1,0}, f32[2]{0}) tuple(%fusion.4, %a)
}
"""
    index = op_kinds.parse_hlo(text)
    assert index["copy.7"]["kind"] == "concatenate/copy"  # inside a header with /*index=5*/
    assert index["ar.1"]["opcode"] == "all-reduce" and index["ar.1"]["kind"] == "collective"
    assert index["fusion.4"]["kind"] == "matmul"  # from what it calls
    # No metadata of its own: the fusion takes its callee's op_name.
    assert op_kinds.part_of(index["fusion.4"]["op_name"]) == ("text_encoder", "backward")
    assert op_kinds.part_of("") == ("unattributed", "other")


def test_traced_op_times_cover_the_program(ps, tmp_path):
    compiled, args = _compiled()
    index = op_kinds.parse_hlo(compiled.as_text())
    jax.block_until_ready(compiled(*args))
    with jax.profiler.trace(str(tmp_path), create_perfetto_trace=True):
        for _ in range(3):
            jax.block_until_ready(compiled(*args))
    times = ps.jax_op_times(ps.read_perfetto(str(tmp_path)), index)
    assert times and all(t >= 0 for t in times.values())
    assert {index[n]["kind"] for n in times} & {"convolution", "matmul"}, {n: index[n] for n in times}
    with pytest.raises(FileNotFoundError, match="perfetto_trace"):
        ps.read_perfetto(str(tmp_path / "empty"))


def test_torch_profile_classes_ops_and_phases(ps):
    torch = pytest.importorskip("torch")

    class VKD(torch.nn.Module):  # the anchor's signature, a conv and a linear
        def __init__(self, bert_trainable, latent=256, bert_cfg=None):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8, 14)

        def forward(self, img, ids, mask, y):
            f = torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(img)), 1).flatten(1)
            return torch.nn.functional.binary_cross_entropy_with_logits(self.fc(f), y)

    from benchmarks import anchor_side

    size = anchor_side.shapes(anchor_side.size_config("tiny"))  # batch 2
    out = ps.profile_torch(types.SimpleNamespace(VKD=VKD), size, "frozen", steps=2, warmup=1)
    assert out["by_kind"].get("convolution", 0) > 0 and out["by_kind"].get("matmul", 0) > 0, out["by_kind"]
    assert {"forward", "backward", "optimiser"} <= set(out["by_phase"]), out["by_phase"]
    assert abs(sum(out["by_kind"].values()) - out["op_ms_per_step"]) < 0.01 + 1e-3 * out["op_ms_per_step"]
    assert op_kinds.torch_kind("aten::convolution_backward") == "convolution"
    assert op_kinds.torch_kind("aten::bmm") == "matmul" and op_kinds.torch_kind("aten::cat") == "concatenate/copy"
    assert op_kinds.torch_kind("aten::native_batch_norm") == "normalisation+elementwise"


def test_profile_step_runs_on_the_tiny_size():
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        PYTHONPATH=ROOT,
        XLA_FLAGS=FAST_XLA,
    )
    env.pop("OUT", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.profile_step",
            "--size=tiny",
            "--variants=frozen",
            "--steps=1",
            "--warmup=1",
            "--skip_torch",
            "--out_dir=",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| convolution |" in result.stdout and "image_encoder/forward" in result.stdout, result.stdout
