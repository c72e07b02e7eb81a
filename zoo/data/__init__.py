"""Datasets and transforms, registered in the ``zoo`` mmengine scope."""

from .digits import DigitsDataset
from .image_datasets import CsvImageDataset, ImageFolderDataset, UnreadableImageError, read_rgb
from .skipping import SampleBatch, SkipCollate, SkippedSample, skip_collate, skipped_in
from .transforms import build_pipeline

__all__ = [
    'DigitsDataset',
    'ImageFolderDataset',
    'CsvImageDataset',
    'build_pipeline',
    'read_rgb',
    'UnreadableImageError',
    'SkippedSample',
    'SkipCollate',
    'SampleBatch',
    'skip_collate',
    'skipped_in',
]
