"""The PyTorch anchor's model and train step, for the step benchmarks (no dataset is read).

    python -m benchmarks.train_step --config=configs/anchor.py          # the paper's shapes, batch 64
    python -m benchmarks.train_step --config=configs/anchor.py:small    # CPU-sized
    python -m benchmarks.train_step --config=configs/anchor.py:tiny --config.train.batch_size=4

The shapes of the PyTorch anchor (shared/anchors/torch_vkd_bench.py): DenseNet-121 at 224 px
with 3 channels, BERT-base with 256 tokens (vocabulary 30522: the benchmark's `--vocab`),
latent 256, hidden 512, posterior on [image, text CLS], one sample, BCE on posterior and
prior samples + 1e-3 KL (beta 0.014 on our per-label scale), Adam at a constant 1e-4
without clipping, no dropout in the heads (the anchor's BERT keeps its 0.1). Built on
configs/mimic.py; the text encoder is trained from scratch with the synthetic tokenizer's
name (the step needs no tokenizer, config_checks wants one).

The argument after the colon picks the shapes (`SIZES`): `paper` (the default), `small`
(the CPU comparisons: DenseNet-121 at 64 px, a 2-layer 128-wide BERT, 64 tokens, batch 8)
or `tiny` (smoke tests: seconds to compile, nothing to read in the timings). Any field can
then be overridden, e.g. `--config.model.text_encoder.remat=True`.
"""

from configs import mimic

# name: (image_size, DenseNet block_sizes, BERT layers, hidden, heads, intermediate, max_length, batch)
SIZES = {
    "paper": (224, (6, 12, 24, 16), 12, 768, 12, 3072, 256, 64),
    "small": (64, (6, 12, 24, 16), 2, 128, 2, 512, 64, 8),
    "tiny": (32, (1, 1, 1, 1), 1, 32, 2, 64, 16, 2),
}


def get_config(size: str = "paper"):
    if size not in SIZES:
        raise ValueError(f"configs/anchor.py:{size}: the sizes are {', '.join(SIZES)}")
    image_size, block_sizes, layers, hidden, heads, intermediate, max_length, batch = SIZES[size]
    config = mimic.get_config()
    data, model, txt, img = config.data, config.model, config.model.text_encoder, config.model.image_encoder
    data.image_size, data.channels, data.build_size = image_size, 3, None
    model.kind, model.latent_dim, model.hidden_dim = "vkd", 256, 512
    model.posterior_inputs, model.text_pooling, model.num_samples = "image_text", "cls", 1
    model.dropout = 0.0  # the anchor's heads have none
    img.block_sizes, img.growth_rate, img.bn_size, img.num_init_features = block_sizes, 32, 4, 64
    img.remat, img.init_from, img.train_mode = False, "", "full"
    txt.init_from, txt.tokenizer = "", "synthetic"
    txt.hidden_size, txt.num_layers, txt.num_heads, txt.intermediate_size = hidden, layers, heads, intermediate
    txt.dropout = txt.attention_dropout = 0.1  # BertConfig() defaults, as the anchor's BERT
    txt.max_position_embeddings, txt.max_length, txt.remat = 512, max_length, False
    config.optim.name, config.optim.learning_rate, config.optim.schedule = "adam", 1e-4, "constant"
    config.optim.warmup_steps, config.optim.grad_clip_norm = 0, 0.0
    config.train.kl_schedule, config.train.beta, config.train.prior_weight = "constant", 0.014, 1.0
    config.train.pos_weight = "none"
    config.train.batch_size = config.train.eval_batch_size = batch
    return config
