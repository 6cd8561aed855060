r"""Pre-activation ResNet-200 on ImageNet (Table 5; with --config.augment=inception_crop the † row).

    python train.py --config=configs/imagenet_preact200.py --config.data_dir=/path/to/tensorflow_datasets \
        --workdir=/tmp/imagenet_preact200
    python eval.py --config=configs/imagenet_preact200.py --workdir=/tmp/imagenet_preact200   # 224 from s=256 and 320 from s=320

Should reproduce: 20.7% top-1 / 5.3% top-5 at 320x320 (Table 5); 20.1% / 4.8% with --config.augment=inception_crop.
"""

from preact.configs import default


def get_config():
    return default.imagenet_config("imagenet_preact200", unit="full_preact", depth=200)
