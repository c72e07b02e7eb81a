# Smoke config: the ACMIL-GA chain (../../mil/acmil_ga_default.py: M = 5 gated-attention branches,
# STKIM, the official AdamW + half-cosine schedule, selection by validation macro-F1 + AUC) on the
# synthetic slides of `tools/make_fixtures.py slides` (2048 px tiled pyramidal TIFFs, 6 train /
# 2 val / 4 test, half with "tumour" regions), about a minute on one CPU thread for the whole chain.
#
#   python tools/make_fixtures.py slides --out data/fixtures/wsi
#   python tools/wsi_tile.py --config configs/smoke/acmil/acmil_ga_slides.py
#   python tools/wsi_extract.py --config configs/smoke/acmil/acmil_ga_slides.py
#   python tools/train.py configs/smoke/acmil/acmil_ga_slides.py
#   python tools/test.py configs/smoke/acmil/acmil_ga_slides.py work_dirs/acmil_ga_slides/best_mil_f1_auc_epoch_*.pth
#   python tools/wsi_heatmap.py configs/smoke/acmil/acmil_ga_slides.py work_dirs/acmil_ga_slides/best_mil_f1_auc_*.pth
#
# Why not the default config on such slides: its 512 px patches at 20x give a 2048 px slide a 4 x 4
# grid (a few tissue patches per bag), and lr 1e-4 over 6 bags barely moves in 50 epochs (validation
# accuracy stays at 0.5). Here: 128 px patches (a 16 x 16 grid, ~100 tissue patches per slide) read
# at 32 px from the pyramid, timm's tiny `test_convnext` as a randomly initialised 64-d extractor
# (nothing can be downloaded in the tests; its random features still separate the dense dark tumour
# nuclei), a 64 -> 32 head, and lr 2e-3 for 12 epochs. The fixture root defaults to data/fixtures
# (environment variable ZOO_FIXTURES overrides it). Expected numbers: docs/acmil.md, "Smoke run".
_base_ = ['../../mil/acmil/acmil_ga_default.py']

fixture_root = '{{$ZOO_FIXTURES:data/fixtures}}/wsi'
feat_dir = fixture_root + '/features'
slide_csv = fixture_root + '/slides.csv'

model = dict(head=dict(in_dim=64, inner_dim=32))
train_dataloader = dict(dataset=dict(feat_dir=feat_dir, csv_path=slide_csv))
val_dataloader = dict(dataset=dict(feat_dir=feat_dir, csv_path=slide_csv))
test_dataloader = dict(dataset=dict(feat_dir=feat_dir, csv_path=slide_csv))

max_epochs = 12
lr = 2e-3
optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=0.0, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(logger=dict(interval=1000))
randomness = dict(seed=0)

wsi = dict(
    slide_dir=fixture_root + '/slides',
    coords_dir=fixture_root + '/coords',
    thumb_dir=fixture_root + '/thumbnails',
    feat_dir=feat_dir,
    heatmap_dir=fixture_root + '/heatmaps',
    tiling=dict(patch_size=128, target_size=32, thumbnail_size=512),
    extractor=dict(model='test_convnext', pretrained=False, batch_size=128, num_workers=0, dtype='float16'),
)
