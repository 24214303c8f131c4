"""The ``cloudviz`` command's groups: each module registers its subcommands on the parser and calls the Python API
(:mod:`cloudviz.api`), printing for people or, with ``--json``, for scripts."""
