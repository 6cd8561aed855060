"""CIFAR augmentation on the accelerator, on whole batches: pad, random crop, random flip.

"4 pixels are padded on each side, and a 32x32 crop is randomly sampled from the padded image or
its horizontal flip" (He et al. 2015 §4.2, which the paper follows). The padding is zeros added
after normalization, so it equals the mean, as in fb.resnet.torch's RandomCrop (the paper does
not say; docs/reproduction.md#choices-where-the-paper-is-silent). Each example draws its
crop offset and flip from its own key, `fold_in(fold_in(key, step), position)`, where position is
its place in the global batch: the result does not depend on how the batch is split over devices
or hosts.
"""

import jax
import jax.numpy as jnp


def example_keys(key: jax.Array, step: jax.Array, positions: jax.Array) -> jax.Array:
    """One key per example from the step and the example's position in the global batch."""
    step_key = jax.random.fold_in(key, step)
    return jax.vmap(lambda p: jax.random.fold_in(step_key, p))(positions)


def pad_crop_flip(images: jax.Array, keys: jax.Array, *, padding: int, flip: bool) -> jax.Array:
    """Random crops of the zero-padded images (float [B, H, W, C]), flipped with probability 1/2.

    With padding 0 there is no crop; with flip False no flip.
    """
    _, height, width, channels = images.shape

    def one(image, key):
        # One draw of 3 words per example (crop row, crop column, flip) keeps the traced graph,
        # and so the compile time, small; the modulo bias is below 1e-9.
        bits = jax.random.bits(key, (3,), jnp.uint32)
        if padding:
            dy, dx = (bits[:2] % (2 * padding + 1)).astype(jnp.int32)
            padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
            image = jax.lax.dynamic_slice(padded, (dy, dx, 0), (height, width, channels))
        if flip:
            image = jnp.where((bits[2] >> 31) == 1, image[:, ::-1], image)
        return image

    return jax.vmap(one)(images, keys)
