r"""Original ResNet-152 on ImageNet (Table 5).

    python train.py --config=configs/imagenet_original152.py --config.data_dir=/path/to/tensorflow_datasets \
        --workdir=/tmp/imagenet_original152
    python eval.py --config=configs/imagenet_original152.py --workdir=/tmp/imagenet_original152   # 224 from s=256 and 320 from s=320

Should reproduce: 23.0% top-1 / 6.7% top-5 at 224x224 (s=256), 21.3% / 5.5% at 320x320 (Table 5).
"""

from preact.configs import default


def get_config():
    return default.imagenet_config("imagenet_original152", unit="original", depth=152)
