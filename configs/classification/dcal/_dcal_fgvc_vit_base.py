# DCAL FGVC recipe (_dcal_fgvc.py) on ViT-B/16 pretrained on ImageNet-21k: timm's
# vit_base_patch16_224.augreg_in21k weights in the SA branch (docs/dcal.md, choice 8), normalised with
# mean = std = 0.5 as those weights were trained. Leaves set the dataset.
_base_ = ['./_dcal_fgvc.py']

mean = (0.5, 0.5, 0.5)
std = (0.5, 0.5, 0.5)
train_pipeline = [
    dict(type='Resize', height=550, width=550),
    dict(type='RandomCrop', height=448, width=448),
    dict(type='HorizontalFlip', p=0.5),
    dict(type='Normalize', mean=mean, std=std),
]
test_pipeline = [
    dict(type='Resize', height=550, width=550),
    dict(type='CenterCrop', height=448, width=448),
    dict(type='Normalize', mean=mean, std=std),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
model = dict(model_name='dcal_vit_base_patch16_448')
