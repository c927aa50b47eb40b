"""Prediction with a saved adapter folder: ``load_adapter(path).predict(texts)``."""

from skewtune.inference.predictor import AdapterClassifier, load_adapter, read_inputs

__all__ = ["AdapterClassifier", "load_adapter", "read_inputs"]
