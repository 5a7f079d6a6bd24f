"""sparks: which attention heads post-training creates, keeps and kills (arXiv 2509.25758).

Its subpackages live here, in ``src/sparks/`` (``tasks``, ``probes``, ``callbacks``, ``analysis``,
``train``); the repository's root folders of those names are links to them.
"""

__version__ = "0.1.0"
