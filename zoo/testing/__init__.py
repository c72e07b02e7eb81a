"""Synthetic data sets written by code (no downloads) in the layouts the real configs read: COCO
instances and ADE20K semantic segmentation (:mod:`.dense`), pyramidal whole slides with a label CSV
(:mod:`.slides`, needs ``tifffile``), ISIC-layout lesions (:mod:`.lesions`), COVIDx-layout gray scans with a
lesion-mask pre-trained MEDUSA body (:mod:`.scans`). Used by the tests, the
smoke configs in ``configs/smoke/`` and ``tools/make_fixtures.py``; training and validation splits
always hold different images."""

from .dense import ADE_CLASSES, COCO_CLASSES, make_ade_fixture, make_coco_fixture

__all__ = [
    'ADE_CLASSES',
    'COCO_CLASSES',
    'make_ade_fixture',
    'make_coco_fixture',
    'fit_body_to_masks',
    'make_lesion_fixture',
    'make_scan_fixture',
    'make_slide_fixture',
]


def __getattr__(name: str):
    # lazy: lesions need albumentations (zoo.lesion_seg), slides need tifffile
    if name == 'make_lesion_fixture':
        from .lesions import make_lesion_fixture

        return make_lesion_fixture
    if name == 'make_slide_fixture':
        from .slides import make_slide_fixture

        return make_slide_fixture
    if name in ('make_scan_fixture', 'fit_body_to_masks'):
        from . import scans

        return getattr(scans, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
