"""The daemon's parameter model, shared by the engine and the control surface.

- :mod:`.namespace`: every address, its type, range, default and meaning.
- :mod:`.values`: checking values against it (:func:`~.values.coerce`), the
  initial values, and the values one change derives for the addresses that
  mirror it (:func:`~.values.linked_values`).

Plain data and pure functions: no torch, no sockets, no engine or control
imports (``tests/test_import_rules.py`` holds it to that).
"""
