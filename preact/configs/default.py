r"""Every config field, with the paper's CIFAR recipe (Appendix).

    python train.py --config=configs/default.py --workdir=/tmp/preact110

Pre-activation ResNet-110 on CIFAR-10 (Table 2, full pre-activation: 6.37% test error).

Recipes (the ``:arg`` after the config path, e.g. ``--config=configs/preact1001.py:torch``):
  paper  batch 128, SGD momentum 0.9, weight decay 1e-4, lr 0.1 with 0.01 for the first 400
         iterations, /10 at 32k and 48k, stop at 64k; per-pixel mean subtraction.
  torch  the Torch re-implementation of resnet-1k-layers (its 4.62% for ResNet-1001 is the
         paper's headline number): batch 64, 200 epochs, /10 at epochs 81 and 122, Nesterov,
         no warm-up, per-channel mean/std normalization.
Both in full, with what the paper leaves open: docs/reproduction.md#training-recipes.
"""

import ml_collections
from ml_collections import config_dict

CIFAR_TRAIN_EXAMPLES = 50_000
RECIPES = ("paper", "torch")


def get_config(recipe: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.experiment = "preact110"  # the name plots and tables use

    # Data (preact.data.make_pipeline).
    c.dataset = "cifar10"  # cifar10 | cifar100 | digits | any TFDS name (imagenet2012)
    c.data_source = "auto"  # auto | archive | tfds
    c.data_dir = ""  # '' = ~/tensorflow_datasets
    c.num_classes = config_dict.placeholder(int)  # None: from the dataset
    c.normalization = "per_pixel_mean"  # per_pixel_mean (paper) | per_channel (Torch)
    c.augment = "pad_crop_flip"  # pad_crop_flip | none | scale_jitter | inception_crop
    c.crop_padding = 4
    c.random_flip = True
    c.random_erasing = 0.0  # probability of erasing a rectangle (not the paper's; 0 = off)
    c.train_split = "train"  # TFDS split syntax, e.g. 'train[:45000]' for a validation hold-out
    c.eval_split = ""  # '' = the dataset's test split; e.g. 'train[45000:]'
    # Streamed datasets (ImageNet): training crop size, shorter-side range of the scale
    # augmentation, (resize, crop) pairs evaluated, decoding threads (0 = min(16, CPU count)).
    c.image_size = 224
    c.train_scale_range = (256, 480)
    c.eval_crops = ((256, 224), (320, 320))
    c.num_data_workers = 0

    # Model (preact.networks.create_model); see preact/units.py for the unit names.
    c.model = ml_collections.ConfigDict()
    c.model.family = "cifar"  # cifar | imagenet
    c.model.depth = 110
    c.model.block = "basic"  # basic (6n+2) | bottleneck (9n+2) | one_layer (3n+2)
    c.model.unit = "full_preact"  # original | bn_after_add | relu_before_add | relu_preact
    # Fields of the unit class, passed to every unit and checked by it (preact.units). The
    # original unit's are Table 1's shortcuts: shortcut_variant (identity | constant_scaling |
    # exclusive_gating | shortcut_only_gating | conv_shortcut | dropout_shortcut),
    # shortcut_scale, residual_scale, gate_bias (None: -6), dropout_rate, dropout_rescale,
    # conv_shortcut_norm; a unit of your own (preact.units.register_unit) has its own. Set from
    # the command line as one dict: --config.model.unit_options="{'shortcut_variant': ...}".
    c.model.unit_options = ml_collections.ConfigDict()
    c.model.width = config_dict.placeholder(int)  # conv1 channels; None: 16 CIFAR, 64 ImageNet
    # Shortcut of a dimension-changing unit; None: the paper's (zero_pad for basic and one-layer
    # nets = option A, projection for bottleneck nets = option B).
    c.model.downsample_shortcut = config_dict.placeholder(str)
    c.model.bottleneck_stride = "first_1x1"  # first_1x1 (resnet-1k-layers) | 3x3 (fb.resnet)
    c.model.scan = True  # identical units of a stage under nn.scan (fast compile)
    c.model.remat = False
    # BN followed by ReLU as one layer with a hand-written backward: same function and variables,
    # about 40% less train-step memory (docs/performance.md).
    c.model.fused_bn_relu = True
    # Gradients of the scanned units' convs: auto | canonical | xla. auto = canonical on CPU,
    # where XLA's own form inside a scan is 10x slower (docs/performance.md); xla elsewhere.
    c.model.conv_grad = "auto"
    c.model.bn_momentum = 0.9  # Flax's momentum = weight of the old average = Torch's 0.1
    c.model.bn_epsilon = 1e-5
    c.model.conv_init_mode = "fan_out"  # He-normal, fan-out as the authors' Torch code

    # Precision and devices.
    c.dtype = "float32"  # float32 | bfloat16 (parameters and BN statistics stay float32)
    # per_device: BN statistics over each device's share of the batch, as the paper's 2-GPU runs
    # (64 images per GPU); synchronized: over the whole global batch.
    c.bn_statistics = "per_device"
    # True: gradients, BN statistics and metrics are summed over devices in one fixed device
    # order (preact/reductions.py), so a run gives bit-identical results on every process layout
    # with the same device count (1 host x 4 devices = 2 hosts x 2). Costs a gathered copy of
    # the gradients per device; False: XLA's all-reduce, equal across layouts only to rounding.
    c.deterministic_reductions = False

    # Optimization: SGD with momentum, coupled L2 weight decay (preact/optim.py). Any optax
    # optimizer by name, e.g. optimizer=adamw with optimizer_kwargs b1, b2, weight_decay.
    c.optimizer = "sgd"
    c.optimizer_kwargs = ml_collections.ConfigDict()  # optax arguments besides learning_rate
    c.schedule = "step"  # step (paper's drops) | cosine | linear | constant; all keep warm-up
    c.batch_size = 128  # global, over all devices and hosts
    c.eval_batch_size = 512  # any multiple of the device count; the last batch is padded
    c.learning_rate = 0.1
    c.momentum = 0.9
    c.nesterov = False
    c.weight_decay = 1e-4
    # True: every parameter decays (BN gamma/beta and the FC bias too), as fb.resnet.torch;
    # False: only conv and FC weights. The paper does not say what its Caffe runs did for BN.
    c.weight_decay_all_params = True
    c.warmup_steps = 400  # Appendix: 0.01 for the first 400 iterations of every CIFAR run
    c.warmup_learning_rate = 0.01
    c.lr_boundaries_steps = (32_000, 48_000)
    c.lr_decay_factor = 0.1
    c.num_train_steps = 64_000
    # Training targets: 1 - label_smoothing on the label, the rest spread evenly over all classes
    # (Szegedy et al. 2016, Sec. 7); not the paper's recipe, 0 = plain one-hot cross-entropy.
    c.label_smoothing = 0.0

    # Loop.
    c.seed = 0
    # jax.random implementation for init, data order, augmentation and dropout: threefry (JAX's
    # default, the same stream on every backend) or rbg (much faster to compile on XLA:CPU; the
    # tests and the offline ablations use it). Explicit, so no process-wide default leaks in.
    c.rng_impl = "threefry2x32"
    c.log_every_steps = 100
    c.eval_every_steps = 2_000
    c.checkpoint_every_steps = 2_000
    c.keep_checkpoints = 3
    c.progress_bar = True
    c.on_divergence = "raise"  # raise | stop (record the failure in metrics.jsonl and stop)

    if recipe is not None:
        apply_recipe(c, recipe)
    return c


def torch_recipe_steps(epochs: int, batch_size: int = 64) -> int:
    """Steps in ``epochs`` drop-remainder epochs of CIFAR's 50k images.

    fb.resnet.torch keeps the 16-image partial batch (782 iterations per epoch at batch 64);
    our epochs drop it (781), so the schedule is 0.13% shorter in iterations.
    """
    return epochs * (CIFAR_TRAIN_EXAMPLES // batch_size)


def apply_recipe(c: ml_collections.ConfigDict, recipe: str) -> ml_collections.ConfigDict:
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; valid: {RECIPES}")
    if recipe == "torch":
        c.batch_size = 64
        c.nesterov = True
        c.warmup_steps = 0
        # fb.resnet.torch: lr 0.1 for epochs 1-80, 0.01 for 81-121, 0.001 from 122 (1-based).
        c.lr_boundaries_steps = (torch_recipe_steps(80), torch_recipe_steps(121))
        c.num_train_steps = torch_recipe_steps(200)
        c.normalization = "per_channel"
        c.experiment += "_torch"
    return c


def cifar_config(
    experiment: str, unit: str, block: str, depth: int, recipe: str | None
) -> ml_collections.ConfigDict:
    """The paper's CIFAR recipe for one network (what every CIFAR experiment file returns)."""
    c = get_config()
    c.experiment = experiment
    c.model.unit = unit
    c.model.block = block
    c.model.depth = depth
    return apply_recipe(c, recipe) if recipe else c


IMAGENET_TRAIN_EXAMPLES = 1_281_167


def imagenet_config(experiment: str, unit: str, depth: int) -> ml_collections.ConfigDict:
    """The paper's ImageNet recipe (§5, Appendix; docs/reproduction.md#the-imagenet-recipe).

    Batch 256 (32 per GPU on 8 GPUs), lr 0.1 without warm-up, /10 at epochs 30 and 60, 90 epochs
    in all (the paper does not say; fb.resnet.torch's default), scale augmentation (shorter side
    in [256, 480], random 224 crop, flip), evaluation on the centre crop at 224 from s=256 and at
    320 from s=320. Per-channel normalization stands in for the per-pixel mean, and the AlexNet
    colour augmentation is left out (not implemented here).
    """
    steps_per_epoch = IMAGENET_TRAIN_EXAMPLES // 256
    c = get_config()
    c.experiment = experiment
    c.dataset = "imagenet2012"
    c.data_source = "tfds"
    c.normalization = "per_channel"
    c.augment = "scale_jitter"  # inception_crop for the scale + aspect ratio row (Table 5, †)
    c.image_size = 224
    c.train_scale_range = (256, 480)
    c.eval_crops = ((256, 224), (320, 320))
    c.num_data_workers = 16
    c.model.family = "imagenet"
    c.model.unit = unit
    c.model.block = "bottleneck"
    c.model.depth = depth
    c.batch_size = 256
    c.eval_batch_size = 256
    c.warmup_steps = 0
    c.lr_boundaries_steps = (30 * steps_per_epoch, 60 * steps_per_epoch)
    c.num_train_steps = 90 * steps_per_epoch
    c.eval_every_steps = 5 * steps_per_epoch
    c.checkpoint_every_steps = 2_000
    return c
