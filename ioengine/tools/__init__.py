"""Command-line tools built on ioengine: ``iotune`` (calibrate a disk into io_properties.yaml)."""
