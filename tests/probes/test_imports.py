import subprocess
import sys


def test_probes_imports_no_trl_train_or_callbacks():
    code = (
        "import sys, sparks.probes.sites, sparks.probes.metrics, sparks.probes.pairs, sparks.probes.attribution, sparks.probes.patching, "
        "sparks.probes.edges, sparks.probes.circuit, sparks.probes.schemes\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'trl' or m.startswith(('sparks.train', 'sparks.callbacks')))\n"
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
