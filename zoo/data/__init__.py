"""Datasets and transforms, registered in the ``zoo`` mmengine scope."""

from .cxr import ClassBalancedSampler, COVIDxDataset, RSNAPneumoniaDataset, cxr_crop
from .digits import DigitsDataset
from .fgvc import CUBDataset, FGVCAircraftDataset, StanfordCarsDataset
from .image_datasets import CsvImageDataset, ImageFolderDataset, UnreadableImageError, read_rgb
from .reid import IdentityBalancedSampler, Market1501Dataset, MSMT17Dataset, VeRi776Dataset
from .skipping import SampleBatch, SkipCollate, SkippedSample, skip_collate, skipped_in
from .transforms import build_pipeline

__all__ = [
    'DigitsDataset',
    'COVIDxDataset',
    'RSNAPneumoniaDataset',
    'ClassBalancedSampler',
    'cxr_crop',
    'ImageFolderDataset',
    'CsvImageDataset',
    'CUBDataset',
    'StanfordCarsDataset',
    'FGVCAircraftDataset',
    'Market1501Dataset',
    'MSMT17Dataset',
    'VeRi776Dataset',
    'IdentityBalancedSampler',
    'build_pipeline',
    'read_rgb',
    'UnreadableImageError',
    'SkippedSample',
    'SkipCollate',
    'SampleBatch',
    'skip_collate',
    'skipped_in',
]
