"""The paper's set-up (VKD on MIMIC-CXR, as in the reference code), shared by all configs.

Variants import this and override a few fields. Derived values (steps per epoch, the
per-process batch, the vocabulary size) are computed in code, never stored here.
"""

import ml_collections

from data_pipelines.table import options as table_options


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    # Devices of the ('data',) mesh; 0 means every visible device.
    config.num_devices = 0

    config.data = data = ml_collections.ConfigDict()
    data.name = "mimic_cxr"  # tensorflow-datasets builder name
    data.data_dir = ml_collections.config_dict.placeholder(str)  # None: tfds's default
    data.image_size = 224
    # Grayscale normalisation (x / 255 - mean) / std.
    data.mean = 0.5
    data.std = 0.25
    # How raw labels (1, 0, -1 uncertain, -2 not mentioned) become targets:
    # 'zeros' (reference: uncertain and not mentioned -> 0), 'ones', 'ignore' (masked out).
    data.uncertainty_policy = "zeros"
    # The reference's rule: "No Finding" = 1 when no other finding is positive.
    data.no_finding_rule = True
    data.shuffle_buffer = 16_384
    data.train_split = "train"
    data.val_split = "validation"
    data.test_split = "test"
    # Stored image size of the build to read (its builder config s<N>); None: image_size.
    # Images are resized from it to image_size in the pipeline.
    data.build_size = ml_collections.config_dict.placeholder(int)
    data.channels = 1  # 1, or 3 (the gray image repeated) for RGB-pretrained encoders
    # 'scalar' ((x / 255 - mean) / std above), 'imagenet' (per-channel ImageNet statistics,
    # needs channels=3) or 'torchxrayvision' (0..255 -> [-1024, 1024], as torchxrayvision's
    # models take it; needs channels=1).
    data.normalization = "scalar"
    # Labels to train on: 'chexpert' (the 14 CheXpert findings, every dataset) or 'nih'
    # (ChestX-ray14's own 14; needs no_finding_rule=False).
    data.label_set = "chexpert"
    # Training-only augmentation; all zero / False is off. Ranges of uniform draws:
    data.augment = ml_collections.ConfigDict(
        dict(
            rotation=0.0,  # +- degrees
            scale=0.0,  # +- relative zoom
            translate=0.0,  # +- fraction of the image side
            brightness=0.0,  # +- fraction of the full intensity range
            contrast=0.0,  # +- relative contrast change
            hflip=False,  # left-right flips move the heart; off unless asked
        )
    )
    # Build options of the real datasets (data_pipelines/<name>/), used when data.name is
    # that dataset; they pick the build (its tfds config) and must match the build command.
    data.mimic_cxr = ml_collections.ConfigDict(
        dict(
            views="frontal",  # 'frontal' (ViewPosition PA/AP, the reference's) | 'all'
            labeler="chexpert",  # 'chexpert' | 'negbio'
            sections="findings_impression",  # | 'impression' | 'findings' | 'full'
        )
    )
    data.openi = ml_collections.ConfigDict(
        dict(
            labels_csv="",  # '' -> labels from MeSH terms; else a CheXpert/CheXbert labeler CSV
            split_seed=0,  # seeded patient-level 70/10/20 split
            sections="findings_impression",
        )
    )
    data.chestxray14 = ml_collections.ConfigDict(
        dict(
            val_fraction=0.1,  # of train_val_list.txt, by patient
            split_seed=0,
        )
    )
    # Your own table of images, reports and labels (data.name = 'csv'); every field is
    # described in data_pipelines/table/options.py.
    data.csv = ml_collections.ConfigDict(table_options.DEFAULTS)
    # Parameters of the synthetic_cxr builder (used only when data.name == 'synthetic_cxr').
    data.synthetic = ml_collections.ConfigDict(
        dict(
            num_train=4000,
            num_validation=500,
            num_test=1000,
            seed=0,  # the data seed (the examples); config.seed is the training seed
            image_signal=1.0,  # scales every finding's visual trace
            noise=1.0,  # scales the image noise
            # Each positive training/validation label becomes "not mentioned" with this
            # probability (the reports and the test labels stay true).
            label_noise=0.0,
            # Per-finding image trace strengths, as factors on the generator's defaults:
            # 'Lung Lesion=0.5,Pneumothorax=2' (finding names as in the labels; '' = all 1).
            # Changes the images of the studies with those findings only.
            strengths="",
            # Each positive training/validation label of a mild finding (severity 0: "mild",
            # "small"; every finding but Support Devices) becomes "not mentioned" with this
            # probability; the reports still name it. Mild findings have the faintest image
            # traces, so unlike label_noise this changes which images rank highest.
            mild_drop=0.0,
        )
    )

    config.model = model = ml_collections.ConfigDict()
    model.kind = "vkd"  # 'vkd' | 'image_only' | 'multimodal' | 'text_only' | 'distill'
    model.dtype = "float32"  # compute dtype; parameters are always float32
    model.latent_dim = 512
    model.hidden_dim = 512  # width of the prior, posterior and classifier MLPs
    model.dropout = 0.5
    # 'text' (the paper) | 'image_text' | 'none' (vkd only: the control, no report at all)
    model.posterior_inputs = "text"
    model.text_pooling = "cls"  # report feature: 'cls' token or 'mean' over tokens
    model.num_samples = 1  # S latent samples per example in training
    model.eval_samples = 16  # S prior samples per image at test time
    # Report details (a finding's side, zone, severity, ...; parsed from the report text, only
    # for datasets with a parser: synthetic_cxr) predicted in training by an MLP, weighted by
    # train.details_weight: 'none' | 'image' (from h(x), an auxiliary task: the positive
    # control) | 'posterior' (decoded from z ~ q(z|x,t): the posterior must keep them).
    model.details_from = "none"
    # Allow PyTorch pickles (.bin/.pth) as init_from: unpickling can run code from the file.
    model.init_allow_pickle = False

    model.image_encoder = img = ml_collections.ConfigDict()
    # DenseNet-121.
    img.block_sizes = (6, 12, 24, 16)
    img.growth_rate = 32
    img.bn_size = 4
    img.num_init_features = 64
    img.remat = False  # recompute dense layers in the backward pass to save memory
    # The stem's max-pool (torchvision's); False halves the downsampling (4x the compute).
    img.stem_pool = True
    # Final pooling: 1 = global average (torchvision's); g > 1 = the mean over each cell of a
    # g x g grid, concatenated (keeps where a feature is; the final map's side must divide by g).
    img.pool_grid = 1
    # Local DenseNet-121 ImageNet weights: torchvision/timm .safetensors (or .pth with
    # model.init_allow_pickle), or Keras .h5. '' trains from scratch.
    img.init_from = ""
    # 'full' (fine-tune everything) | 'frozen' | 'last_k' (the top train_last_k dense
    # blocks, the transitions after them and the final norm; BatchNorm statistics still update).
    img.train_mode = "full"
    img.train_last_k = 1
    img.lr_multiplier = 1.0  # on the learning rate, for this encoder's trainable parameters

    model.text_encoder = txt = ml_collections.ConfigDict()
    # Local Hugging Face BERT directory (config.json + model.safetensors, flax_model.msgpack,
    # or pytorch_model.bin with model.init_allow_pickle), e.g. a downloaded Bio_ClinicalBERT.
    # Its config.json then sets the architecture and the sizes below are ignored.
    txt.init_from = ""
    # Tokenizer: a local Hugging Face directory, or 'synthetic' (built from the
    # synthetic_cxr vocabulary); '' uses init_from's. Never a hub name: nothing is downloaded.
    txt.tokenizer = ""
    # Architecture when training from scratch: BERT-base (ClinicalBERT's shape).
    txt.hidden_size = 768
    txt.num_layers = 12
    txt.num_heads = 12
    txt.intermediate_size = 3072
    txt.dropout = 0.1
    txt.attention_dropout = 0.1
    txt.max_position_embeddings = 512
    txt.max_length = 256  # report tokens fed to the encoder
    txt.remat = False
    # Attention kernel: 'auto' (cuDNN flash attention on an NVIDIA GPU with bf16/fp16
    # compute, else XLA), 'xla' or 'cudnn'. Dropout on attention probabilities (training
    # with attention_dropout > 0) always takes the explicit softmax path.
    txt.attention_impl = "auto"
    txt.train_mode = "full"  # 'full' | 'frozen' | 'last_k' (the top train_last_k layers)
    txt.train_last_k = 2
    # A frozen encoder's report features are computed once and reused (no BERT in the
    # train step), cached on disk under cache_dir, keyed by the reports and the encoder
    # ('' = one cache per machine: $VKD_JAX_CACHE/text_features, else ~/.cache/vkd-jax/text_features).
    txt.cache_features = True
    txt.cache_dir = ""
    txt.lr_multiplier = 1.0

    config.train = train = ml_collections.ConfigDict()
    train.batch_size = 32  # global, over all devices and processes
    train.eval_batch_size = 64
    train.num_epochs = 50
    train.max_steps = -1  # > 0 stops after that many steps (smoke runs, tests)
    # The objective per example is sum_k BCE_k + beta * KL(q || p) (+ the options below),
    # all divided by the K = 14 labels: beta = 1 is the ELBO. The reference code's KL weight
    # 1e-3 on a BCE averaged over the 14 labels is beta = 0.014.
    train.beta = 0.014
    # The factor on beta over training: 'constant' | 'linear' (warm-up from 0) | 'cyclical'.
    train.kl_schedule = "cyclical"
    train.kl_warmup_steps = 1000  # for 'linear'
    train.kl_cycles_per_epoch = 4.0  # for 'cyclical' (the reference: 4 per epoch, ratio 0.5)
    train.kl_cycle_ratio = 0.5
    # KL balancing (DreamerV2): alpha of the KL's gradient pulls the prior towards the
    # posterior, 1 - alpha costs the posterior; None: the plain KL (all of it to both).
    train.kl_balance = ml_collections.config_dict.placeholder(float)
    # Free bits: a floor (nats) under the batch-mean KL, in total or per latent dimension;
    # below it the KL term is constant (no gradient). 0 is off.
    train.free_bits = 0.0
    train.free_bits_per_dim = False
    # Weight of the extra BCE on prior samples (reference code); aligns training with test.
    train.prior_weight = 1.0
    # model.kind='distill': the image path's loss is (1 - w) * BCE(labels) + w * BCE(teacher's
    # sigmoid(logits / temperature)), the teacher a report classifier trained alongside.
    train.distill_weight = 0.5
    train.distill_temperature = 2.0
    # True: a positive label's soft target stays 1 (max(teacher, label)), so the teacher only
    # adds to the labels; False (the pre-registered study's distill) lets it lower positives.
    train.distill_keep_positives = False
    # > 0 adds an auxiliary task to any kind with an image encoder: predict which tokens the
    # report contains from h(x) (multi-label BCE summed over the vocabulary, per label slot).
    train.report_aux_weight = 0.0
    # Weight of the report-details term (model.details_from; > 0 exactly when that is not
    # 'none'): the masked BCE summed over the stated detail bits, per label slot.
    train.details_weight = 0.0
    # Per-class positive weights: 'none', 'balanced' ((1-p)/p) or 'reference' ((1-p)^2),
    # p the class prevalence in the training split.
    train.pos_weight = "none"
    train.log_every_steps = 50
    train.eval_every_steps = 0  # 0: validate (and checkpoint) once per epoch
    train.checkpoint_every_steps = 1000  # extra saves between validations, for resuming

    config.optim = optim = ml_collections.ConfigDict()
    optim.name = "adam"  # 'adam' | 'adamw'
    optim.learning_rate = 1e-5
    optim.weight_decay = 0.0  # adamw only
    optim.b1 = 0.9
    optim.b2 = 0.999
    optim.schedule = "cosine"  # 'cosine' | 'constant', after linear warm-up
    optim.warmup_steps = 500
    optim.min_lr_ratio = 0.0  # cosine floor, as a fraction of learning_rate
    optim.grad_clip_norm = 1.0  # global-norm clipping; 0 disables

    # Evaluation (end of training and `run.py --mode=eval`).
    config.eval = evl = ml_collections.ConfigDict()
    evl.threshold_method = "youden"  # per-class thresholds chosen on the validation split: 'youden' | 'f1'
    evl.bootstrap_samples = 1000  # resamples of studies for the 95% AUROC intervals; 0 skips them
    evl.bootstrap_seed = 0
    evl.calibration_bins = 15  # equal-width bins of the reliability diagram and the ECE
    evl.refer_fraction = 0.1  # the most uncertain fraction referred to a radiologist
    evl.figures = True  # ROC curves, reliability diagram and training curves as PNG
    return config
