"""VKD on synthetic_cxr with small encoders trained from scratch, a few CPU minutes.

    python run.py --config=configs/demo_scratch.py --workdir=/tmp/vkd-scratch

The data is generated locally from a seed on first use; nothing is downloaded. This was the
demo of the first release (its results table is in docs/study.md, "History"); `configs/demo.py` uses it
with a pretrained report encoder instead of the small BERT trained here. Tests use it too.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.data.name = "synthetic_cxr"
    config.data.image_size = 64
    config.data.shuffle_buffer = 4096

    model = config.model
    model.latent_dim = 64
    model.hidden_dim = 128
    model.dropout = 0.2
    model.text_pooling = "mean"
    model.eval_samples = 8
    img = model.image_encoder
    img.block_sizes = (2, 2, 2, 2)
    img.growth_rate = 12
    img.num_init_features = 16
    txt = model.text_encoder
    txt.tokenizer = "synthetic"
    txt.hidden_size = 64
    txt.num_layers = 2
    txt.num_heads = 2
    txt.intermediate_size = 128
    txt.max_position_embeddings = 128
    txt.max_length = 64

    train = config.train
    train.batch_size = 64
    train.eval_batch_size = 128
    train.num_epochs = 12
    # The first release's KL weight 1 on a BCE averaged over the 14 labels (see default.py).
    train.beta = 14.0
    train.log_every_steps = 20

    optim = config.optim
    optim.name = "adamw"
    optim.learning_rate = 2e-3
    optim.weight_decay = 1e-4
    optim.warmup_steps = 50
    return config
