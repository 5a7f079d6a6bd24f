"""The ``sparks`` subcommands, one module each (analysis.cli lists them in ``COMMANDS``).

A command module has ``add_parser(subparsers)``, which adds the command's parser with its flags and
``run`` as its default, and ``run(args)``, which does the command's work; helpers several commands
share are in ``common``.
"""
