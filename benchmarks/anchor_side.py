"""The PyTorch anchor's side of the step comparison (`side_by_side.py`, `profile_step.py`): the
anchor found (`find_anchor`: `--anchor`, else `ANCHOR_PLACES`) and loaded (`load_anchor`, with
`torch_densenet_module` where torchvision does not work), its VKD built for each anchor run
(`TORCH_VARIANTS`) at the shapes of a `configs/anchor.py` config (`Shapes`), stepped,
FLOP-counted and timed (`run_torch`: its own `bench` on a GPU, a plain loop on CPU).

Importing it sets OMP_WAIT_POLICY, before torch loads; torch is imported only where it is used,
JAX never (on a GPU our step runs in a subprocess, with the device to itself).
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import resource
import statistics
import sys
import time
import types

from configs import anchor as anchor_config
from vkd_jax.pretrained import torchvision_ops

# Before torch loads libgomp: its default active spin-wait makes a 2-thread torch CPU step
# 10-100x slower whenever other processes share the cores (measured here: 20 ms steps
# became 2-3 s); passive waiting costs nothing on an idle machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANCHOR_PLACES = (
    ".anchors/torch_vkd_bench.py",
    "shared/anchors/torch_vkd_bench.py",
    "../shared/anchors/torch_vkd_bench.py",
)

# The shapes both sides are built at, read from a configs/anchor.py config.
Shapes = collections.namedtuple(
    "Shapes", "image_size block_sizes text_layers text_hidden text_heads text_intermediate max_length batch"
)
# Anchor runs -> its VKD's `bert_trainable`. `frozen` is the anchor as published: its BERT,
# though frozen, is in train mode, so dropout still draws masks in it; `frozen_eval` puts that
# BERT in eval mode (no dropout), which is what our frozen step computes (a frozen encoder is
# a deterministic feature extractor, the same features as the text-feature cache).
TORCH_VARIANTS = {"frozen": False, "finetune": True, "frozen_eval": False}


def log(msg: str) -> None:
    print(f"[anchor_side] {msg}", file=sys.stderr, flush=True)


def size_config(size: str, batch: int = 0):
    """configs/anchor.py at `size` (of its `SIZES`), at `batch` (0: the size's)."""
    config = anchor_config.get_config(size)
    if batch:
        config.train.batch_size = batch
    return config


def shapes(config) -> Shapes:
    txt = config.model.text_encoder
    return Shapes(
        config.data.image_size,
        tuple(config.model.image_encoder.block_sizes),
        txt.num_layers,
        txt.hidden_size,
        txt.num_heads,
        txt.intermediate_size,
        txt.max_length,
        config.train.batch_size,
    )


def find_anchor(path: str | None) -> str | None:
    for p in [path] if path else [os.path.join(ROOT, a) for a in ANCHOR_PLACES]:
        if p and os.path.isfile(p):
            return os.path.abspath(p)
    return None


def torch_densenet_module():
    """A `torchvision`-like namespace whose `models.densenet121` / `models.DenseNet` are
    torchvision's DenseNet in plain torch (same modules, order and shapes)."""
    import torch
    from torch import nn

    class DenseLayer(nn.Module):
        def __init__(self, cin, growth_rate, bn_size):
            super().__init__()
            self.norm1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU(inplace=True)
            self.conv1 = nn.Conv2d(cin, bn_size * growth_rate, 1, bias=False)
            self.norm2, self.relu2 = nn.BatchNorm2d(bn_size * growth_rate), nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

        def forward(self, features):
            x = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
            return self.conv2(self.relu2(self.norm2(x)))

    class DenseBlock(nn.ModuleDict):
        def __init__(self, num_layers, cin, growth_rate, bn_size):
            super().__init__()
            for i in range(num_layers):
                self.add_module(f"denselayer{i + 1}", DenseLayer(cin + i * growth_rate, growth_rate, bn_size))

        def forward(self, x):
            features = [x]
            for layer in self.values():
                features.append(layer(features))
            return torch.cat(features, 1)

    class TorchDenseNet(nn.Module):
        def __init__(self, growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, bn_size=4):
            super().__init__()
            layers = collections.OrderedDict(
                conv0=nn.Conv2d(3, num_init_features, 7, stride=2, padding=3, bias=False),
                norm0=nn.BatchNorm2d(num_init_features),
                relu0=nn.ReLU(inplace=True),
                pool0=nn.MaxPool2d(3, stride=2, padding=1),
            )
            c = num_init_features
            for i, n in enumerate(block_config):
                layers[f"denseblock{i + 1}"] = DenseBlock(n, c, growth_rate, bn_size)
                c += n * growth_rate
                if i != len(block_config) - 1:
                    layers[f"transition{i + 1}"] = nn.Sequential(
                        collections.OrderedDict(
                            norm=nn.BatchNorm2d(c),
                            relu=nn.ReLU(inplace=True),
                            conv=nn.Conv2d(c, c // 2, 1, bias=False),
                            pool=nn.AvgPool2d(2, stride=2),
                        )
                    )
                    c //= 2
            layers["norm5"] = nn.BatchNorm2d(c)
            self.features = nn.Sequential(layers)

    def densenet121(weights=None):
        assert weights is None
        return TorchDenseNet()

    return types.SimpleNamespace(
        __version__="plain-torch copy of torchvision's DenseNet",
        models=types.SimpleNamespace(densenet121=densenet121, DenseNet=TorchDenseNet),
    )


def load_anchor(path: str, block_sizes: tuple[int, ...]):
    """Imports the anchor module; returns (module, torchvision version or description)."""
    torchvision_ops.declare_missing_ops()  # PyPI's CUDA torchvision beside a CPU-only torch
    import transformers  # noqa: F401 - before any stand-in: it probes for torchvision on import

    shim = None
    try:
        import torchvision

        tv, tv_version = torchvision, torchvision.__version__
    except Exception as e:  # noqa: BLE001 - missing, or PyPI's build beside a CPU-only torch
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        log(f"torchvision unusable ({type(e).__name__}: {str(e)[:120]}); DenseNet-121 from the plain-torch copy")
        tv = shim = torch_densenet_module()
        tv_version = tv.__version__
    spec = importlib.util.spec_from_file_location("torch_vkd_bench", path)
    anchor = importlib.util.module_from_spec(spec)
    if shim is not None:
        sys.modules["torchvision"] = shim  # for the anchor's `import torchvision` only
    try:
        spec.loader.exec_module(anchor)
    finally:
        if shim is not None:
            del sys.modules["torchvision"]
    if tuple(block_sizes) != (6, 12, 24, 16):
        # Smoke sizes: the same blocks as our side, then a 1x1 conv to the 1024 features
        # that the anchor's heads expect.
        import torch

        def densenet(weights=None):
            net = tv.models.DenseNet(growth_rate=32, block_config=tuple(block_sizes), num_init_features=64)
            channels = net.features.norm5.num_features
            net.features.add_module("to1024", torch.nn.Conv2d(channels, 1024, 1, bias=False))
            return net

        anchor.torchvision = types.SimpleNamespace(models=types.SimpleNamespace(densenet121=densenet))
    return anchor, tv_version


def bert_config(size: Shapes):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=30522,
        hidden_size=size.text_hidden,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.text_heads,
        intermediate_size=size.text_intermediate,
    )


def torch_model(anchor, variant: str, size: Shapes):
    """The anchor's VKD for one of TORCH_VARIANTS."""
    model = anchor.VKD(TORCH_VARIANTS[variant], 256, bert_cfg=bert_config(size))
    if variant == "frozen_eval":
        model.bert.eval()  # the anchor's `bench` never calls .train(), so this holds
    return model


def torch_inputs(size: Shapes, batch, device):
    import torch

    image, length = size.image_size, size.max_length
    return [
        torch.randn(batch, 3, image, image, device=device),
        torch.randint(0, 30000, (batch, length), device=device),
        torch.ones(batch, length, dtype=torch.long, device=device),
        (torch.rand(batch, 14, device=device) < 0.2).float(),
    ]


def torch_stepper(model, inputs):
    """The anchor's `bench` step (Adam on the trainable parameters, lr 1e-4, fp32) as a
    function returning the seconds it took and the loss; CPU only (synchronous). Its phases
    are `torch.profiler` ranges `vkd::forward`, `vkd::backward`, `vkd::optimiser` (for
    `profile_step.py`; outside a profiler they cost next to nothing)."""
    import torch
    from torch.profiler import record_function

    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        t = time.perf_counter()
        with record_function("vkd::forward"):
            loss = model(*inputs)
        opt.zero_grad(set_to_none=True)
        with record_function("vkd::backward"):
            loss.backward()
        with record_function("vkd::optimiser"):
            opt.step()
        return time.perf_counter() - t, float(loss.detach())

    return step


def torch_gflop_per_sample(model, inputs, batch: int) -> float | None:
    """FLOPs of one forward and backward by torch's FlopCounterMode (matmuls and
    convolutions), per example, as the anchor's `flops_per_sample`."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            model(*inputs).backward()
        model.zero_grad(set_to_none=True)
        return round(counter.get_total_flops() / batch / 1e9, 3)
    except Exception as e:  # noqa: BLE001 - a count is a nicety
        log(f"torch FLOP count failed: {type(e).__name__}: {e}")
        return None


def torch_cpu_line(variant: str, batch: int, times: list[float], loss: float, args) -> dict:
    import torch

    median = statistics.median(times)
    return dict(
        side="torch",
        variant=variant,
        precision="fp32",
        batch=batch,
        torch=torch.__version__,
        torchvision=args.torchvision_version,
        ms_per_step=round(median * 1e3, 2),
        ms_mean=round(statistics.mean(times) * 1e3, 2),
        samples_per_s=round(batch / median, 2),
        loss=loss,
        threads=torch.get_num_threads(),
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
        timing="median of per-step times",
        peak_mem_gib=None,
        host_peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )


def run_torch(anchor, size: Shapes, args, cuda: bool) -> list[dict]:
    import torch

    batch = size.batch
    results = []
    precisions = ["bf16"] + (["fp32"] if "float32" in args.jax_dtypes_for("frozen") else []) if cuda else ["fp32"]
    for variant in args.torch_variants:
        for precision in precisions:
            if precision == "fp32" and cuda and variant != "frozen":
                continue  # fp32 only for frozen on the GPU, as the issue asks
            torch.manual_seed(0)
            line = dict(
                side="torch",
                variant=variant,
                precision=precision,
                batch=batch,
                torch=torch.__version__,
                torchvision=args.torchvision_version,
            )
            try:
                model = torch_model(anchor, variant, size)
                inputs = torch_inputs(size, batch, "cuda" if cuda else "cpu")
                if cuda and precision == "bf16":  # fp32 eager at batch 8, as the anchor counts
                    gflop = torch_gflop_per_sample(
                        torch_model(anchor, variant, size).to("cuda"), torch_inputs(size, 8, "cuda"), 8
                    )
                    torch.cuda.empty_cache()
                elif not cuda:
                    gflop = torch_gflop_per_sample(model, inputs, batch)
                else:
                    gflop = None
                if cuda:
                    amp = precision == "bf16"
                    r = anchor.bench(
                        f"vkd_{variant}", model, inputs, batch, amp, False, amp, steps=args.steps, warm=args.warmup
                    )
                    line.update(
                        amp=amp,
                        channels_last=amp,
                        ms_per_step=r["ms_per_step"],
                        samples_per_s=r["samples_per_s"],
                        peak_mem_gib=r["peak_mem_gib"],
                        loss=r["loss"],
                        timing="cuda events, back to back",
                    )
                else:
                    step = torch_stepper(model, inputs)
                    for _ in range(args.warmup):
                        step()
                    times, losses = zip(*[step() for _ in range(args.steps)], strict=True)
                    line = torch_cpu_line(variant, batch, list(times), losses[-1], args)
                line["gflop_per_sample"] = gflop
                del model, inputs
            except Exception as e:  # noqa: BLE001 - report, go on
                line["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            if cuda:
                torch.cuda.empty_cache()
            log(json.dumps(line))
            if args.out_dir:  # each line as it comes, should this command be cut short
                os.makedirs(args.out_dir, exist_ok=True)
                with open(os.path.join(args.out_dir, "torch.jsonl"), "a") as f:
                    f.write(json.dumps(line) + "\n")
            results.append(line)
    return results
