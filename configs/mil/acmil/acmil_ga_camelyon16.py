# ACMIL-GA on CAMELYON16 (normal vs tumour), ResNet-18 features at 20x: the official
# camelyon_natural_supervised config (lr 2e-4, 100 epochs). Official split: slides whose name
# contains 'test' form the test set; the rest is split 90/10 into train/val (write it to the CSV).
_base_ = ['./acmil_ga_default.py']

data_root = 'data/camelyon16'
wsi = dict(
    slide_dir=data_root + '/slides',
    coords_dir=data_root + '/coords',
    thumb_dir=data_root + '/thumbnails',
    feat_dir=data_root + '/features',
    heatmap_dir=data_root + '/heatmaps',
)
feat_dir = data_root + '/features'
slide_csv = data_root + '/slides.csv'
_bags = dict(type='MILBagDataset', feat_dir=feat_dir, csv_path=slide_csv, classes=['normal', 'tumor'])
train_dataloader = dict(dataset=dict(_bags, split='train'))
val_dataloader = dict(dataset=dict(_bags, split='val'))
test_dataloader = dict(dataset=dict(_bags, split='test'))

max_epochs = 100
lr = 2e-4
optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=0.0, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
