r"""Original ResNet-200 on ImageNet (Table 5).

    python train.py --config=configs/imagenet_original200.py --config.data_dir=/path/to/tensorflow_datasets \
        --workdir=/tmp/imagenet_original200
    python eval.py --config=configs/imagenet_original200.py --workdir=/tmp/imagenet_original200   # 224 from s=256 and 320 from s=320

Should reproduce: 21.8% top-1 / 6.0% top-5 at 320x320 (Table 5).
"""

from preact.configs import default


def get_config():
    return default.imagenet_config("imagenet_original200", unit="original", depth=200)
