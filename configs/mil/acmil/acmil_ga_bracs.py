# ACMIL-GA on BRACS, 3 classes: the 7 subtypes {0,1,2} -> benign, {3,4} -> atypical, {5,6} ->
# malignant, official train/val/test split (the official bracs.csv columns slide_id, label,
# split_info are read as is). ResNet-18 features, lr 2e-4, 100 epochs (bracs_natural_supervised).
_base_ = ['./acmil_ga_default.py']

data_root = 'data/bracs'
wsi = dict(
    slide_dir=data_root + '/slides',
    coords_dir=data_root + '/coords',
    thumb_dir=data_root + '/thumbnails',
    feat_dir=data_root + '/features',
    heatmap_dir=data_root + '/heatmaps',
)
feat_dir = data_root + '/features'
slide_csv = data_root + '/bracs.csv'
_bags = dict(
    type='MILBagDataset', feat_dir=feat_dir, csv_path=slide_csv, label_map={0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 2}
)
train_dataloader = dict(dataset=dict(_bags, split='train'))
val_dataloader = dict(dataset=dict(_bags, split='val'))
test_dataloader = dict(dataset=dict(_bags, split='test'))

num_classes = 3
model = dict(head=dict(num_classes=num_classes))

max_epochs = 100
lr = 2e-4
optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=0.0, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
