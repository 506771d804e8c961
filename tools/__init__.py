"""Repository-only entry points (not installed): ``python -m tools.iotune`` from a checkout.

The implementation is installed as :mod:`ioengine.tools` (the ``iotune`` command).
"""
