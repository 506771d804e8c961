"""ioengine: Seastar's storage stack for Python."""
