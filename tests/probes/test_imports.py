import subprocess
import sys


def test_probes_imports_no_trl_train_or_callbacks():
    code = (
        "import sys, probes.sites, probes.metrics, probes.pairs, probes.attribution, probes.patching, "
        "probes.edges, probes.circuit\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'trl', 'train', 'callbacks'})\n"
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
