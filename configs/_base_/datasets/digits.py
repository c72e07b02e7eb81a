# scikit-learn's handwritten digits (1,797 real 8x8 scans, 10 classes), resized to img_size and
# split 80/20 (stratified, fixed seed). Ships with scikit-learn: no download.
img_size = 32
data_root = None
train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='DigitsDataset', split='train', img_size=img_size, augment=True),
)
val_dataloader = dict(
    batch_size=256,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='DigitsDataset', split='val', img_size=img_size, augment=False),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator
