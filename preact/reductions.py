"""Sums and means over the mapped device axis: XLA's all-reduce, or one fixed device order.

XLA's all-reduce is free to add the devices' values in any order it likes, and it does not add
them in the same order on every process layout: on several processes it sums each process's
devices first and then the partial sums across processes, so 1 process x 4 devices and
2 processes x 2 devices round the same four gradients differently in the last bit. Training is
chaotic enough that one flipped bit (a ReLU input within 1e-7 of zero) moves the whole run after
a few steps, which hides any real difference between two layouts.

With ``ordered=True`` every device gathers all the values (``lax.all_gather``: a copy, exact) and
adds them itself left to right in device-index order, ``((v0 + v1) + v2) + ...``. The program and
its inputs are then the same on every layout with the same number of devices, and so is the result,
bit for bit. It costs one gathered copy of the reduced tree per device (``n`` times the gradient
size for the gradients) and ``n - 1`` additions instead of the all-reduce's tree: measured in
``docs/performance.md#deterministic-reductions``.
"""

from __future__ import annotations

from typing import Any

import jax
from jax import lax


def _ordered_sum(x: jax.Array, axis_name: str) -> jax.Array:
    gathered = lax.all_gather(x, axis_name)  # [n, *x.shape], device 0 first, on every device
    total = gathered[0]
    for i in range(1, gathered.shape[0]):  # a fixed left fold: never reassociated by XLA
        total = total + gathered[i]
    return total


def psum(tree: Any, axis_name: str, *, ordered: bool = False) -> Any:
    """``lax.psum``; with ``ordered``, summed in device order (bit-identical across layouts)."""
    if not ordered:
        return lax.psum(tree, axis_name)
    return jax.tree.map(lambda x: _ordered_sum(x, axis_name), tree)


def pmean(tree: Any, axis_name: str, *, ordered: bool = False) -> Any:
    """``lax.pmean``; with ``ordered``, the ordered sum divided by the device count."""
    if not ordered:
        return lax.pmean(tree, axis_name)
    n = lax.psum(1, axis_name)  # the device count, a compile-time constant
    return jax.tree.map(lambda x: _ordered_sum(x, axis_name) / n, tree)
