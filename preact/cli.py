"""The command-line contract shared by ``train.py`` and ``eval.py``: flags in, exit status out.

Bad input -- an unknown flag or config field, a value of the wrong type, an impossible value, a
config file that cannot be read, an unusable workdir -- ends the program with exit status 2 and
one line on stderr (``error: ...``), no traceback, before anything is compiled or written. absl
parses the flags before ``main`` runs and lets ml_collections' errors escape as tracebacks, so
the parsing itself happens here (:func:`parse_flags`, given to ``app.run``).

One config loader and one override syntax for every command: ``train.py``/``eval.py`` take
``--config=NAME_OR_PATH[:ARG]`` and ``--config.FIELD=VALUE`` flags (:func:`load_config`); the
analysis tools, which take several configs at once, take each as one string of the same words,
``"NAME_OR_PATH[:ARG] --config.FIELD=VALUE ..."`` (:func:`config_from_spec`), parsed by the same
ml_collections flag, with the same checks and messages.

Also here: the flags and the call that make a run multi-host (``jax.distributed.initialize``),
and the logging levels both scripts use.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shlex
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_dict, config_flags

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3

# Config fields holding a dict of options for a part chosen by name (the unit's fields, the
# optimizer's arguments): their keys depend on the choice, so they are overridden whole.
OPEN_FIELDS = ("model.unit_options", "optimizer_kwargs")
_TRACEBACK = "Traceback (most recent call last):"
_DID_YOU_MEAN = re.compile(r'Did you mean "([^"]+)" instead of "([^"]+)"\?')


def one_line(text: str) -> str:
    """``text`` on one line; an embedded traceback shrinks to its last line (the error)."""
    if _TRACEBACK in text:
        head, _, trace = text.partition(_TRACEBACK)
        last = [line for line in trace.splitlines() if line.strip()][-1:]
        text = " ".join([head.rstrip().rstrip(":") + ":", *last]) if head.strip() else last[0]
    return " ".join(text.split())


def fail(message: Any) -> NoReturn:
    """The bad-input exit: one line on stderr, status 2."""
    print(f"error: {one_line(str(message))}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def _describe_parse_error(e: Exception, argv: list[str]) -> str:
    text = str(e)
    if isinstance(e, (AttributeError, KeyError)):  # ml_collections: a config field that is not
        hint = _DID_YOU_MEAN.search(text)
        name = hint.group(2) if hint else text.strip("'\"\\")
        args = [a for a in argv if re.match(rf"--?config\.(\w+\.)*{re.escape(name)}\b", a)]
        where = args[0] if args else f"--config.{name}"
        for field in OPEN_FIELDS:  # dicts whose keys the config cannot declare in advance
            if where.lstrip("-").startswith(f"config.{field}."):
                return (
                    f"{where}: the keys of config.{field} are set as one dict, e.g. "
                    f"--config.{field}=\"{{'{name}': ...}}\""
                )
        return f"{where}: no such config field" + (f"; {hint.group(0)}" if hint else "")
    if isinstance(e, flags.Error):
        return text
    return f"{type(e).__name__}: {text}"  # raised by the config file's own code


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with every failure turned into the bad-input exit."""
    try:
        rest = flags.FLAGS(argv)
    except Exception as e:  # noqa: BLE001 - whatever goes wrong reading flags is bad input
        fail(_describe_parse_error(e, argv))
    if len(rest) > 1:
        fail(f"unexpected arguments: {' '.join(rest[1:])}")
    return rest


def run(main: Callable[[], Any]) -> None:
    """``app.run`` with :func:`parse_flags`; ``main`` takes no arguments."""
    resolve_config_names(sys.argv)
    app.run(lambda argv: main(), flags_parser=parse_flags)


def resolve_config_names(argv: list[str]) -> None:
    """``--config=preact1001[:torch]`` names an experiment config of the package: replace the
    name by its file's path, in place (the config flag reads its overrides from ``sys.argv``).
    A file of that name, or a name that is not a packaged config, is left as it is (a directory
    of that name, such as a workdir called ``smoke``, does not shadow the config)."""
    from preact import configs

    directory = os.path.dirname(os.path.abspath(configs.__file__))
    for i, arg in enumerate(argv):
        match = re.fullmatch(r"--config=(\w+)(:.*)?", arg)
        if not match or os.path.isfile(match.group(1)):  # a file of that name is what was meant
            continue
        path = os.path.join(directory, f"{match.group(1)}.py")
        if os.path.isfile(path):
            argv[i] = f"--config={path}{match.group(2) or ''}"


def load_config(holder: flags.FlagHolder) -> config_dict.ConfigDict:
    """The parsed ``--config``, or the bad-input exit if its file is missing or an override has
    elements of the wrong type (ml_collections types a tuple, not what is inside it)."""
    try:
        config = holder.value
        config.get("experiment")  # a config file that failed to load raises on first use
    except OSError as e:
        fail(f"--{holder.name}: {e}")
    problem = _override_type_problem(flags.FLAGS[holder.name])
    if problem:
        fail(problem)
    return config


def config_from_spec(spec: str) -> config_dict.ConfigDict:
    """One config from one string of command-line words, ``NAME_OR_PATH[:ARG]`` then any
    ``--config.FIELD=VALUE`` overrides, quoted as a shell would (e.g. ``"original110
    --config.model.unit_options=\"{'shortcut_variant': 'conv_shortcut'}\""``). Read exactly as
    ``train.py`` reads its ``--config`` flags; raises ValueError with the message it would
    print."""
    words = shlex.split(spec)
    if not words or words[0].startswith("-"):
        raise ValueError(f"config {spec!r} must start with a config name or file")
    stray = [w for w in words[1:] if not w.startswith("--config.")]
    if stray:
        raise ValueError(f"config {spec!r}: {stray[0]!r} is not a --config.FIELD=VALUE override")
    argv = ["config", f"--config={words[0]}", *words[1:]]
    resolve_config_names(argv)
    flag_values = flags.FlagValues()
    holder = config_flags.DEFINE_config_file(
        "config", None, "config", flag_values=flag_values, sys_argv=argv
    )
    try:
        flag_values(argv)
        config = holder.value
        config.get("experiment")  # a config file that failed to load raises on first use
    except Exception as e:  # noqa: BLE001 - whatever goes wrong reading a config is bad input
        raise ValueError(f"config {spec!r}: {one_line(_describe_parse_error(e, argv))}") from None
    problem = _override_type_problem(flag_values["config"])
    if problem:
        raise ValueError(f"config {spec!r}: {problem}")
    return config


def override_label(spec: str) -> str:
    """A short name for the overrides of a spec, for legends: ``unit=original, depth=8``."""
    pairs = [w[len("--config.") :].partition("=") for w in shlex.split(spec)[1:]]
    return ", ".join(f"{field.rsplit('.', 1)[-1]}={value}" for field, _, value in pairs)


def _override_type_problem(flag: Any) -> str | None:
    """The first override whose elements have another type than the default's, or None."""
    overrides = config_flags.get_override_values(flag)
    if any(isinstance(v, (tuple, list)) for v in overrides.values()):
        defaults = _load_defaults(config_flags.get_config_filename(flag))
        for path, value in overrides.items():
            problem = _element_type_problem(_get(defaults, path), value)
            if problem:
                return f"--{flag.name}.{path}={value!r}: {problem}"
    return None


def _load_defaults(spec: str) -> Any:
    """The config of ``path[:argument]`` as its file makes it, before any override."""
    path, *argument = spec.split(":", 1)
    loader = importlib.util.spec_from_file_location("preact_config_defaults", path)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module.get_config(*argument)


def _get(config: Any, path: str) -> Any:
    for key in path.split("."):
        config = config.get(key) if isinstance(config, config_dict.ConfigDict) else None
    return config


def _element_type_problem(default: Any, value: Any) -> str | None:
    if (
        not isinstance(default, (tuple, list))
        or not default
        or not isinstance(value, (tuple, list))
    ):
        return None
    kinds = {type(x) for x in default}
    if len(kinds) != 1:
        return None
    (kind,) = kinds
    ok = (int, float) if kind is float else (kind,)
    for x in value:
        if not isinstance(x, ok) or (isinstance(x, bool) and kind is not bool):
            return f"elements must be {kind.__name__} (the default is {tuple(default)!r})"
    return None


# --- multi-host ---------------------------------------------------------------------------------


def define_distributed_flags() -> None:
    flags.DEFINE_bool(
        "distributed",
        False,
        "Multi-host run: call jax.distributed.initialize() first. With no other flag the "
        "coordinator, process count and process id come from the cluster (SLURM, TPU pod, Open "
        "MPI, Kubernetes) and JAX_COORDINATOR_ADDRESS.",
    )
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (implies "
                        "--distributed).")  # fmt: skip
    flags.DEFINE_integer("num_processes", None, "Number of processes (implies --distributed).")
    flags.DEFINE_integer("process_id", None, "This process's index (implies --distributed).")


def initialize_distributed() -> None:
    """``jax.distributed.initialize`` if the flags ask for a multi-host run."""
    f = flags.FLAGS
    explicit = {
        "coordinator_address": f.coordinator_address,
        "num_processes": f.num_processes,
        "process_id": f.process_id,
    }
    if not f.distributed and all(v is None for v in explicit.values()):
        return
    import jax

    # Cross-process collectives on CPU (tests, a CPU cluster) need an implementation; gloo is
    # built in. Other backends ignore the setting.
    if "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in os.environ:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**{k: v for k, v in explicit.items() if v is not None})
    except (ValueError, TypeError) as e:
        fail(f"--distributed: {e} (no cluster environment was detected: pass "
             "--coordinator_address, --num_processes and --process_id)")  # fmt: skip


def quiet_logging() -> None:
    """Warnings and errors only: Orbax and JAX log every save and compile at INFO."""
    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("jax").setLevel(logging.WARNING)
