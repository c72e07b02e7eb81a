# DCAL-ViT-Base/16 on VeRi-776 (576 training vehicles, 256x256; recipe: _dcal_reid.py).
# Paper (Re-ID table, third-party transcription): ViT-B 78.1 / 96.0 -> 80.2 mAP / 96.9 rank-1 with DCAL.
# Not reproduced here. data_root: VeRi/ (image_train/, image_query/, image_test/).
_base_ = ['./_dcal_reid.py']

data_root = 'data/VeRi'
img_size = (256, 256)  # vehicles: square input
train_pipeline = [
    dict(type='Resize', height=img_size[0], width=img_size[1]),
    dict(type='HorizontalFlip', p=0.5),
    dict(type='PadIfNeeded', min_height=img_size[0] + 20, min_width=img_size[1] + 20, border_mode=0, fill=0),
    dict(type='RandomCrop', height=img_size[0], width=img_size[1]),
    dict(type='Normalize', mean={{_base_.mean}}, std={{_base_.std}}),
    dict(type='Erasing', p=0.5, scale=(0.02, 0.4), ratio=(0.3, 3.3), fill='random'),
]
test_pipeline = [
    dict(type='Resize', height=img_size[0], width=img_size[1]),
    dict(type='Normalize', mean={{_base_.mean}}, std={{_base_.std}}),
]
train_dataloader = dict(dataset=dict(type='VeRi776Dataset', data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(type='VeRi776Dataset', data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
model = dict(model_kwargs=dict(num_classes=576, img_size=img_size))
