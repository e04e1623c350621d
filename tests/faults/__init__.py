"""The fault suite: real faults injected into real files and processes, and what survives them.

A package (unlike the other test folders) so that its ``conftest`` does not take the module name
``conftest``, which the test modules of ``tests/`` import their helpers from.
"""
