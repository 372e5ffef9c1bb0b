"""Stage modules: one per rule file (``workflow/rules/NAME.smk`` -> ``stages/NAME.py``).

A stage reads its input files, calls the science layers (``data``, ``models``, ``train``,
``features``, ``encoding``, ``scaling``, ``report``) on arrays and dataclasses, and writes
its outputs atomically with provenance. Each module has ``register(add)``, which declares
its commands on the CLI's parser (``add(name, func, help, threads=..., device=...)``
returns the sub-parser). Heavy libraries are imported inside the command functions, so
building the parser stays fast. ``study.py`` holds the commands no rule calls (validate,
estimate, install-profile).
"""
