"""Augmentation on the accelerator, on whole batches: pad, random crop, random flip, random erasing.

"4 pixels are padded on each side, and a 32x32 crop is randomly sampled from the padded image or
its horizontal flip" (He et al. 2015 §4.2, which the paper follows). The padding is zeros added
after normalization, so it equals the mean, as in fb.resnet.torch's RandomCrop (the paper does
not say; docs/reproduction.md#choices-where-the-paper-is-silent). Each example draws its
crop offset and flip from its own key, `fold_in(fold_in(key, step), position)`, where position is
its place in the global batch: the result does not depend on how the batch is split over devices
or hosts.

Random erasing (Zhong et al. 2017, "Random Erasing Data Augmentation", Algorithm 1) is not part of
the paper's recipe; it is an option, off by default (tried on the laptop Fashion-MNIST recipe,
it did not pay within 20 epochs: README). With probability p, a rectangle of the (cropped,
flipped) image takes the value 0, which after mean subtraction is the mean image, the same value
as the crop padding.
Its area is a uniform fraction of the image in [0.02, 0.4] and its aspect ratio h/w uniform in
[0.3, 1/0.3], the defaults of Zhong et al.; where their algorithm draws again until the rectangle
fits, a side longer than the image is cut to the image's, which changes only the rare tall or
wide draws.
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


ERASING_AREA = (0.02, 0.4)  # fraction of the image (Zhong et al. 2017, s_l and s_h)
ERASING_ASPECT = 0.3  # h / w is drawn from [0.3, 1 / 0.3] (r_1)


def random_erasing(images: jax.Array, keys: jax.Array, *, probability: float) -> jax.Array:
    """Sets one random rectangle of each image (float [B, H, W, C]) to 0 with `probability`.

    The draws come from `fold_in(key, 1)` of each example's key, so the crop and flip an example
    gets are the same with and without erasing.
    """
    _, height, width, _ = images.shape

    def one(image, key):
        u = jax.random.uniform(jax.random.fold_in(key, 1), (5,))
        low, high = ERASING_AREA
        area = (low + (high - low) * u[1]) * (height * width)
        aspect = ERASING_ASPECT + (1 / ERASING_ASPECT - ERASING_ASPECT) * u[2]
        h = jnp.clip(jnp.round(jnp.sqrt(area * aspect)), 1, height).astype(jnp.int32)
        w = jnp.clip(jnp.round(jnp.sqrt(area / aspect)), 1, width).astype(jnp.int32)
        top = jnp.minimum(jnp.floor(u[3] * (height - h + 1)).astype(jnp.int32), height - h)
        left = jnp.minimum(jnp.floor(u[4] * (width - w + 1)).astype(jnp.int32), width - w)
        rows, cols = jnp.arange(height), jnp.arange(width)
        inside = ((rows >= top) & (rows < top + h))[:, None] & ((cols >= left) & (cols < left + w))
        erase = inside & (u[0] < probability)
        return jnp.where(erase[:, :, None], jnp.zeros_like(image), image)

    return jax.vmap(one)(images, keys)
