"""The PyTorch peer computes the project's network: same parameter count, same logits for the
same weights, and it trains. Needs torch, so it is not in tests/ (the test environment has no
torch): ``benchmarks/gpu_box/first_contact.sh`` and ``benchmarks/gpu.sh`` run it on the GPU
before measuring, and by hand ``python -m pytest -q benchmarks/test_torch_peer.py``.

On a GPU both sides compute in float32 at full precision, set explicitly (JAX's default there
and cuDNN's let float32 convolutions round through TF32, about 1e-3 relative, against the 1e-4
tolerance): like is compared with like. The peer runs on the CPU and, where there is one, on
the GPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import common
from preact import networks
from tests import helpers

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("depth", [110, 164, 1001])
def test_torch_peer_has_the_flax_parameter_count(depth):
    pytest.importorskip("torch")
    from benchmarks import torch_preact

    block = common.block_of(depth)
    jax_count = common.jax_param_count(depth, block)
    assert jax_count == common.PAPER_PARAM_COUNTS[depth]
    assert torch_preact.count_params(torch_preact.PreActResNet(depth, block)) == jax_count


def _random_variables(model, seed):
    """Random Flax variables of a plausible scale, from shapes alone (no init to compile), with
    BN statistics and affine parameters away from 0 and 1 so that their copy is tested."""
    shapes = jax.eval_shape(
        lambda: model.init(helpers.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    )
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":  # He-like scale keeps 20 layers of activations finite
            fan_in = int(np.prod(leaf.shape[:-1]))
            return rng.normal(0.0, np.sqrt(2.0 / fan_in), leaf.shape).astype(np.float32)
        if name in ("scale", "var"):
            return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        return rng.normal(0.0, 0.1, leaf.shape).astype(np.float32)  # bias, mean

    return jax.tree_util.tree_map_with_path(fill, shapes)


def _torch_devices():
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    return devices


@pytest.fixture
def full_fp32_precision():
    """No TF32 in either framework for the duration of a test."""
    from benchmarks import torch_bench

    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch_bench.set_fp32_precision("highest")
    with jax.default_matmul_precision("highest"):
        yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul


@pytest.mark.parametrize("device", _torch_devices())
@pytest.mark.parametrize("depth,block,scan", [(20, "basic", False), (20, "bottleneck", True)])
def test_torch_peer_computes_the_flax_function(depth, block, scan, device, full_fp32_precision):
    """With the Flax weights copied in, the peer gives the same logits with running statistics
    (eval) and batch statistics (train): the graph is the same (shortcuts, strides, where the
    pre-activation sits), not just the parameter count. n = 3 and 2 units per stage: identity
    units, stage transitions, unrolled and scanned parameter layouts."""
    torch = pytest.importorskip("torch")
    from benchmarks import torch_preact

    model = networks.cifar_resnet(depth, block=block, num_classes=10, scan=scan)
    variables = _random_variables(model, seed=depth)
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)

    @jax.jit
    def forward(variables, x):  # one compilation for both modes
        train, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
        return model.apply(variables, x, train=False), train

    expected_eval, expected_train = forward(variables, x)
    peer = torch_preact.PreActResNet(depth, block)
    torch_preact.load_flax_variables(peer, variables)
    peer = peer.to(device)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(device)
    with torch.no_grad():
        got_eval = peer.eval()(xt).cpu().numpy()
        got_train = peer.train()(xt).cpu().numpy()
    np.testing.assert_allclose(got_eval, np.asarray(expected_eval), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_train, np.asarray(expected_train), rtol=1e-4, atol=1e-4)


@pytest.fixture
def one_torch_thread():
    """Two PyTorch threads on two shared cores can spin each other 100x slower."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("depth,dtype", [(8, "bfloat16"), (11, "float32")])
def test_torch_peer_trains_tiny(depth, dtype, one_torch_thread):
    from benchmarks import torch_bench, torch_preact

    record = torch_bench.run(depth=depth, batch=4, dtype=dtype, mode="eager", warmup=1, steps=2)
    assert record["status"] == "ok" and record["loss_finite"]
    assert record["params"] == common.jax_param_count(depth, common.block_of(depth))
    assert record["step"]["steps"] == 2
    memory = record["memory"]["after_steps"]
    if torch.cuda.is_available():  # the run took the GPU: its peak memory is recorded
        assert record["worker_env"]["device"] == torch.cuda.get_device_name()
        assert memory["peak_bytes_in_use"] > 0
    else:  # PyTorch keeps no memory record on the CPU
        assert record["worker_env"]["device"] == "cpu" and memory is None
    for key in common.RUN_KEYS:
        assert key in record
    peer = torch_preact.PreActResNet(depth, common.block_of(depth))
    opt = torch_preact.make_optimizer(peer)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (
        0.1,
        0.9,
        1e-4,
        False,
    )
    norm = peer.norm_final
    assert (norm.momentum, norm.eps) == (0.1, 1e-5)
