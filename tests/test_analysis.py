"""The analysis package: its commands' flags are defined when they run, not on import, and none of
it reaches into configs/ by import."""

import os
import subprocess
import sys

import pytest
from absl import flags

from preact.analysis import ablations, curves, propagation, summary
from tests.helpers import run_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = (ablations, curves, propagation, summary)


def test_importing_the_tools_defines_no_flags():
    for module in MODULES:
        ours = flags.FlagValues()
        module.define_flags(ours)
        # --out, --title, --config, ... would clash between the tools if defined on import.
        assert set(ours) and not set(ours) & set(flags.FLAGS), module.__name__


@pytest.mark.slow
def test_library_code_imports_no_config_module():
    code = (
        "import sys\n"
        "import preact.analysis.ablations, preact.analysis.curves\n"
        "import preact.analysis.propagation, preact.analysis.summary\n"
        "print(sorted(m for m in sys.modules if m == 'configs' or m.startswith('configs.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_summary_command(capsys):
    run_command(summary, "--config=configs/smoke.py", "--config.model.depth=8")
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("total_params ")
    assert any(line.startswith("depth 8 ") for line in lines)
