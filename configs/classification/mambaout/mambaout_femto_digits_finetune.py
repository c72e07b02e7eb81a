# Fine-tuning recipe, shown end to end on the embedded digits: MambaOut-Femto trained on all ten digits
# (mambaout_femto_digits.py, whose run exports work_dirs/mambaout_femto_digits/model.safetensors) is fine-tuned
# on a new label set, the digits 5-9 relabelled 0-4. The same route takes ImageNet weights to any dataset: set
# model_name, the checkpoint (pretrained=True with pretrained_cfg_overlay.file, or a manifest name such as
# 'mambaout_femto.official'), num_classes and the dataset (an ImageFolderDataset, or the FGVC layouts DCAL uses:
# CUBDataset, StanfordCarsDataset, FGVCAircraftDataset).
#   - new head: timm loads every weight but the classifier, which is dropped when the class count differs from the
#     model's pretrained_cfg (TimmClassifier logs which head is new);
#   - a smaller lr (5e-4 instead of the 2e-3 of the from-scratch run), 1 warm-up epoch, cosine;
#   - layer decay 0.75 (timm's param_groups_layer_decay over the model's group_matcher: the stem learns at
#     0.75^(blocks) of the head's lr), no weight decay for 1-D parameters.
_base_ = ['./mambaout_femto_digits.py']

digits = (5, 6, 7, 8, 9)
checkpoint = 'work_dirs/mambaout_femto_digits/model.safetensors'
model = dict(
    model_kwargs=dict(
        num_classes=len(digits),
        pretrained=True,
        pretrained_cfg_overlay=dict(file=checkpoint),
    ),
)
train_dataloader = dict(dataset=dict(digits=digits))
val_dataloader = dict(dataset=dict(digits=digits))
test_dataloader = val_dataloader
max_epochs = 3
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs, eta_min=1e-6, convert_to_iter_based=True),
]
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.05, betas=(0.9, 0.999)),
    constructor='TimmParamGroupsConstructor',
    paramwise_cfg=dict(layer_decay=0.75),
)
