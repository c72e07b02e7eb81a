# Shared chest X-ray recipe of MEDUSA (Aboutalebi et al., arXiv 2110.06063) on COVIDx-style label files
# (zoo/data/cxr.py). Leaves set the data set, its classes and the reference numbers in their headers.
#
# From the authors' development code (github.com/lindawangg/COVID-Net, tf_dataset@a5d43a7: train_tf.py,
# data_tf.py, augmentations.py): Adam, lr 1e-4, batch 16; softmax cross-entropy; classes drawn with equal
# probability (sample_from_datasets); augmentations each with p = 0.5: shear 0.15, rotation 5 deg, translation
# 20 px, intensity shift 10 / scale 0.9-1.1, horizontal flip. Preprocessing: COVID-Net's process_image_file
# (top 8 % of rows dropped, central square, resize 480); the body's 256 view is derived inside the model.
# [inferred / zoo choices]: ImageNet normalisation and timm's ImageNet ResNet-50 for the trunk (the development
# code trains the ResNet from scratch and reads images / 255); Keras' shear 0.15 read as radians (8.6 deg);
# the intensity augmentation as albumentations' RandomBrightnessContrast; 50 epochs (the code runs up to 200,
# the released CXR-3 was fine-tuned for up to 100).
_base_ = ['../../_base_/default_runtime.py']

data_root = 'data/COVIDx'
num_classes = 2
classes = ('negative', 'positive')
train_ann, train_dir = 'train_COVIDx9B.txt', 'train'
test_ann, test_dir = 'test_COVIDx9B.txt', 'test'
img_size = 480
mean = (0.485, 0.456, 0.406)
std = (0.229, 0.224, 0.225)
train_pipeline = [
    dict(type='Affine', shear=(-8.6, 8.6), p=0.5),
    dict(type='Affine', rotate=(-5, 5), p=0.5),
    dict(type='Affine', translate_px=(-20, 20), p=0.5),
    dict(type='RandomBrightnessContrast', brightness_limit=10 / 255, contrast_limit=0.1, p=0.5),
    dict(type='HorizontalFlip', p=0.5),
    dict(type='Normalize', mean=mean, std=std),
]
test_pipeline = [dict(type='Normalize', mean=mean, std=std)]
dataset = dict(type='COVIDxDataset', data_root=data_root, num_classes=num_classes, img_size=img_size)
train_dataloader = dict(
    batch_size=16,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='ClassBalancedSampler'),
    collate_fn=dict(type='default_collate'),
    dataset=dict(dataset, ann_file=train_ann, img_dir=train_dir, pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=16,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(dataset, ann_file=test_ann, img_dir=test_dir, pipeline=test_pipeline),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='CXRReport', classes=classes)
test_evaluator = val_evaluator

# pretrained=True: the trunk from timm's resnet50.tv_in1k; the body from body_checkpoint (e.g. a U-Net trained
# on lung masks, the reference's trained_model.hdf5 converted to UNetBody keys) or its initialisation.
model = dict(
    type='TimmClassifier',
    model_name='medusa_resnet50',
    model_kwargs=dict(num_classes=num_classes, pretrained=True, body_checkpoint=None),
)
max_epochs = 50
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4))
param_scheduler = []
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# joint training (the development code's final schedule); for its first schedule (only the body and heads on
# every third epoch, only the trunk otherwise) add dict(type='BodyTrunkAlternationHook', period=3)
custom_hooks = [
    dict(type='ProgressBarHook'),
    dict(type='TrainingCurveHook'),
    dict(type='SkippedSamplesHook'),
    dict(type='ExportSafetensorsHook', filename='model.safetensors'),
]
