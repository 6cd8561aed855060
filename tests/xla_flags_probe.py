"""The loss gradient of the Fashion-MNIST network (``configs/fashion_mnist.py``: PreAct-20, width
16, BatchNorm in training mode) on one fixed batch of 32 random 28x28 images, and the compiled
HLO of its gradient, saved to ``OUT.npz`` / ``OUT.hlo``. tests/test_xla_flags.py runs it with the
project's XLA:CPU settings (``preact.xla_flags``), without them (``PREACT_XLA_DEFAULTS=0``), and
in float64 (``float64`` as second argument: the reference both float32 runs are measured by).

    python -m tests.xla_flags_probe OUT [float64]
"""

import sys

from preact import xla_flags

xla_flags.apply_defaults()  # before JAX starts: what train.py does

import jax  # noqa: E402

FLOAT64 = sys.argv[2:] == ["float64"]
jax.config.update("jax_enable_x64", FLOAT64)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from preact import configuration, networks  # noqa: E402
from preact.configs import fashion_mnist  # noqa: E402


def main(out: str) -> None:
    config = fashion_mnist.get_config()
    dtype = jnp.float64 if FLOAT64 else jnp.float32
    if FLOAT64:  # a dtype the project does not offer; for this reference only
        networks.DTYPES["float64"] = jnp.float64
        config.dtype = "float64"
    model = configuration.build_model(config)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.standard_normal((32, 28, 28, 1)), dtype)
    labels = jnp.asarray(rng.integers(0, 10, 32))
    variables = model.init(jax.random.key(0), images[:1].astype(jnp.float32), train=False)
    variables = jax.tree.map(lambda x: x.astype(dtype), variables)  # the same values

    def loss(params):
        logits, _ = model.apply({**variables, "params": params}, images, train=True,
                                mutable=["batch_stats"])  # fmt: skip
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    grad = jax.jit(jax.value_and_grad(loss))
    value, grads = grad(variables["params"])
    leaves = jax.tree_util.tree_leaves_with_path(grads)
    arrays = {jax.tree_util.keystr(path): np.asarray(g, np.float64) for path, g in leaves}
    arrays.update(_one_convolution(dtype))
    np.savez(out + ".npz", loss=np.asarray(value), **arrays)
    with open(out + ".hlo", "w") as f:
        f.write(grad.lower(variables["params"]).compile().as_text())


def _one_convolution(dtype) -> dict[str, np.ndarray]:
    """One 3x3 convolution of the network's first stage (16 channels, 28x28, stride 1) and one of
    a downsampling unit (stride 2), with both gradients: keys ``conv:...``. A single convolution
    has no deep chain to amplify rounding, so its float32 error against float64 is the kernel's
    own precision (about 1e-6 relative), whatever the CPU."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((32, 28, 28, 16)), dtype)
    w = jnp.asarray(rng.standard_normal((3, 3, 16, 32)) / 12, dtype)
    out = {}
    for stride in (1, 2):

        def f(x, w, stride=stride):
            return jax.lax.conv_general_dilated(
                x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )

        y = jax.jit(f)(x, w)
        gx, gw = jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.sin(f(x, w))), argnums=(0, 1)))(x, w)
        for name, value in (("y", y), ("dx", gx), ("dw", gw)):
            out[f"conv:stride{stride}:{name}"] = np.asarray(value, np.float64)
    return out


if __name__ == "__main__":
    main(sys.argv[1])
