r"""Pre-activation ResNet-152 on ImageNet (Table 5).

    python train.py --config=configs/imagenet_preact152.py --config.data_dir=/path/to/tensorflow_datasets \
        --workdir=/tmp/imagenet_preact152
    python eval.py --config=configs/imagenet_preact152.py --workdir=/tmp/imagenet_preact152   # 224 from s=256 and 320 from s=320

Should reproduce: 21.1% top-1 / 5.5% top-5 at 320x320 (Table 5).
"""

from preact.configs import default


def get_config():
    return default.imagenet_config("imagenet_preact152", unit="full_preact", depth=152)
