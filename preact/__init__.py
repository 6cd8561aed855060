"""preact: pre-activation residual networks (He et al., 2016) in JAX/Flax."""

__version__ = "0.1.0"
