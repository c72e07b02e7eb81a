# Bags of patch features (one <slide>.h5 per slide in feat_dir) and a CSV with the columns
# slide,label,split. Variable bag sizes: batch_size 1, default_collate -> inputs (1, N, D).
feat_dir = 'data/wsi/features'
slide_csv = 'data/wsi/slides.csv'
_bags = dict(type='MILBagDataset', feat_dir=feat_dir, csv_path=slide_csv)
train_dataloader = dict(
    batch_size=1,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(**_bags, split='train'),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(**_bags, split='val'),
)
test_dataloader = dict(
    batch_size=1,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(**_bags, split='test'),
)
# macro AUC, accuracy, macro-F1, micro-F1 and f1_auc = f1_macro + auc_macro (model selection)
val_evaluator = dict(type='MILMetric')
test_evaluator = val_evaluator
