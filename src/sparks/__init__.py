"""sparks: which attention heads post-training creates, keeps and kills (arXiv 2509.25758).

Its subpackages live here, in ``src/sparks/``, one room each, lowest floor first: ``tasks`` (the
problems), ``probes`` (scoring heads on a live model), ``runs`` (a run's data model and its store),
``dashboards`` (pictures and live dashboards), ``callbacks`` (the tracker), then ``train`` and
``analysis``. An import never runs back up a floor (tests/test_layers.py). The repository's root
folders ``tasks``, ``probes``, ``callbacks``, ``analysis`` and ``train`` are links to them.
"""

__version__ = "0.1.0"
