"""VKD from torchxrayvision's chest X-ray DenseNet-121, on synthetic_cxr: the image encoder has
xrv's shape and input (one channel, 224 px, pixels scaled to [-1024, 1024]), so its converted
weights load as they are.

    vkd-jax convert-xrv --weights=densenet121-res224-all --output=xrv_densenet121.safetensors
    vkd-jax train --config=configs/torchxrayvision.py --workdir=/tmp/vkd-xrv \
        --config.model.image_encoder.init_from=xrv_densenet121.safetensors

The report side is configs/demo_scratch.py's small BERT with the synthetic tokenizer (nothing to
install). It reads the 64-px synthetic build the demo uses (`data.build_size`), resized to 224 px
in the pipeline. A DenseNet-121 at 224 px takes seconds a step on a CPU:
`--config.train.max_steps=20` tries it, an accelerator trains it. On your own data, point
`data.name`, `data.data_dir` and the text encoder at it (docs/datasets.md, docs/pretrained.md);
keep the image encoder and `data` fields below.
"""

from configs import default, demo_scratch


def get_config():
    config = demo_scratch.get_config()
    data = config.data
    data.image_size = 224  # xrv's resolution
    data.build_size = 64  # the demo's synthetic build, upsampled
    data.channels = 1
    data.normalization = "torchxrayvision"  # xrv.utils.normalize(x, 255): (2 x / 255 - 1) * 1024
    # DenseNet-121 as torchxrayvision (and torchvision) build it.
    img, densenet121 = config.model.image_encoder, default.get_config().model.image_encoder
    for field in ("block_sizes", "growth_rate", "bn_size", "num_init_features", "stem_pool", "pool_grid"):
        img[field] = densenet121[field]
    img.init_from = ""  # the converted .safetensors file (vkd-jax convert-xrv); '' trains from scratch
    img.lr_multiplier = 0.1  # pretrained features: a gentler step than the new heads'
    config.train.batch_size = 32
    config.train.eval_batch_size = 64
    return config
