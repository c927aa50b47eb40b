"""Datasets by name (offline), local files, deduplicated stratified splits, tokenisation and batching."""

from skewtune.data.batching import LengthGroupedBatchSampler, PaddingCollator, TokenizedSplit, tokenize_split
from skewtune.data.datasets import DATASETS, Splits, load_dataset_splits
from skewtune.data.readers import read_table

__all__ = [
    "DATASETS",
    "LengthGroupedBatchSampler",
    "PaddingCollator",
    "Splits",
    "TokenizedSplit",
    "load_dataset_splits",
    "read_table",
    "tokenize_split",
]
