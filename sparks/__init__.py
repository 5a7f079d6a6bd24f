"""sparks: which attention heads post-training creates, keeps and kills (arXiv 2509.25758).

The repository's folders (``tasks/``, ``probes/``, ``callbacks/``, ``analysis/``, ``train/``) install as
the subpackages of this one package (``pyproject.toml`` maps them), so ``sparks`` is the only top-level
import name the project adds to an environment.
"""

__version__ = "0.1.0"
