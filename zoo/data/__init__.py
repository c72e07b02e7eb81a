"""Datasets and transforms, registered in the ``zoo`` mmengine scope."""

from .digits import DigitsDataset
from .image_datasets import CsvImageDataset, ImageFolderDataset, read_rgb
from .transforms import build_pipeline

__all__ = ['DigitsDataset', 'ImageFolderDataset', 'CsvImageDataset', 'build_pipeline', 'read_rgb']
