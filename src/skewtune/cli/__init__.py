"""The ``skewtune`` command line: train / predict / hub / merge / backbones."""
