"""The XLA:CPU settings this project starts JAX with: which, why, and how to opt out.

XLA reads ``XLA_FLAGS`` once, when JAX first starts a backend, so :func:`apply_defaults` must run
before any computation; the entry points (``train.py``, ``eval.py``, the analysis runners and the
CPU benchmarks) call it first thing. In a notebook, call it before the first JAX operation.

**YNNPACK library fusions off.** Recent jaxlib releases (0.10 and 0.12 measured) hand each
convolution on an x86 CPU to a YNNPACK "library fusion" by default. For this project's networks
(3x3 convolutions of 16 to 64 channels on 8x8 to 32x32 images, and their gradients) those run
slower than XLA's own convolutions: on a 2-core AVX2 machine the default train step ran 1.9x
(jax 0.10.2) and 1.2x (jax 0.12.0.1) faster with them off for the Fashion-MNIST config, 1.6x and
1.1x for PreAct-110 (figures and commands: docs/performance.md). Not for every network: with
jax 0.12.0.1 the bottleneck PreAct-164 ran 1.22x *slower* with them off (same page); there, set
``PREACT_XLA_DEFAULTS=0``. Those figures are a family-23 AMD EPYC's; on a Zen 3 EPYC (family 25,
jax 0.12.1) the Fashion-MNIST step ran equally fast with and without (same page).
``--xla_cpu_experimental_ynn_fusion_type=`` (an empty list) turns those fusions off and leaves
every convolution and matrix product to XLA. It is a CPU-only flag: GPU and TPU computations do
not read it. The arithmetic is the same float32 convolution computed in another order, so results
agree to rounding (tested).

Opt out: set the flag yourself in ``XLA_FLAGS`` (any value of yours is kept), or set
``PREACT_XLA_DEFAULTS=0`` to leave ``XLA_FLAGS`` untouched. Older jaxlib releases abort on a flag
they do not know, so nothing is added below :data:`MIN_JAXLIB`, the oldest release checked.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import MutableMapping

# flag name -> value this project sets unless the user set the flag.
DEFAULTS = {"xla_cpu_experimental_ynn_fusion_type": ""}
OPT_OUT = "PREACT_XLA_DEFAULTS"
MIN_JAXLIB = (0, 10, 2)


def _version(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    parts = re.findall(r"\d+", text.split("+")[0])[:3]
    return tuple(int(p) for p in parts) if parts else None


def _backend_started() -> bool:
    """Whether JAX has already started a backend (XLA_FLAGS has then been read)."""
    try:
        from jax._src import xla_bridge

        return bool(getattr(xla_bridge, "_backends", None))
    except Exception:  # a private attribute: unknown is "not started"
        return False


def apply_defaults(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Add to ``XLA_FLAGS`` each flag of :data:`DEFAULTS` that it does not set already.

    Returns the flags added (empty when opted out, when the user set them, or when the installed
    jaxlib is older than :data:`MIN_JAXLIB` or absent). Idempotent."""
    from preact import provenance

    env = os.environ if environ is None else environ
    if env.get(OPT_OUT, "1").strip() == "0":
        return []
    version = _version(provenance.package_version("jaxlib"))
    if version is None or version < MIN_JAXLIB:
        return []
    current = env.get("XLA_FLAGS", "")
    added = [
        f"--{name}={value}"
        for name, value in DEFAULTS.items()
        if not re.search(rf"(^|\s)--{re.escape(name)}(=|\s|$)", current)
    ]
    if added:
        env["XLA_FLAGS"] = " ".join([current.strip(), *added]).strip()
        if environ is None and _backend_started():
            logging.warning(
                "XLA_FLAGS %s added after JAX started its backend: it takes effect in the next "
                "process only (call preact.xla_flags.apply_defaults() before any JAX operation)",
                " ".join(added),
            )
    return added
