"""The functional core: the manifest, desired and current state as values, the diff, the
plan and its renderings. Pure functions over immutable values; no AWS SDK, no CLI
framework (tests/test_layout.py checks it)."""
