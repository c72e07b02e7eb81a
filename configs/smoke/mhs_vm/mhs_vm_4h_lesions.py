# Smoke config: the MHS-VM ISIC 2018 recipe (../../segmentation/mhs_vm/mhs_vm_4h_isic2018.py: VM-UNet with
# 4-head multi-head scanning, ISICSegDataset with the official flips / rotation and min-max scaling,
# BCE + Dice, AdamW, threshold 0.5, DSC / IoU) on the ISIC-layout lesion fixture of
# `tools/make_fixtures.py lesions` (64 train / 16 held-out val images), with a narrow, shallow VM-UNet
# (dims 16-128, one block per stage, d_state 4), 32 px inputs, batch 8 and a constant lr for 10 epochs
# (~1 min on one CPU thread).
#
#   python tools/make_fixtures.py lesions --out data/fixtures/lesions
#   OMP_NUM_THREADS=1 python tools/train.py configs/smoke/mhs_vm/mhs_vm_4h_lesions.py
#   python tools/test.py configs/smoke/mhs_vm/mhs_vm_4h_lesions.py work_dirs/mhs_vm_4h_lesions/best_seg_dsc_*.pth
#
# tools/test.py writes prediction overlays to <work dir>/overlays. The fixture root defaults to
# data/fixtures (environment variable ZOO_FIXTURES overrides it). Expected numbers: docs/mhs_vm.md.
_base_ = ['../../segmentation/mhs_vm/mhs_vm_4h_isic2018.py']

data_root = '{{$ZOO_FIXTURES:data/fixtures}}/lesions/'
img_size = 32
max_epochs = 10

model = dict(
    net=dict(
        variant=None,
        dims=(16, 32, 64, 128),
        depths=(1, 1, 1, 1),
        depths_decoder=(1, 1, 1, 1),
        d_state=4,
        head_num=4,
        drop_path_rate=0.0,
        img_size=img_size,
    )
)
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root, img_size=img_size)
)
val_dataloader = dict(batch_size=16, num_workers=0, dataset=dict(data_root=data_root, img_size=img_size))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = []  # constant lr: the run is too short for a decay to help
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(logger=dict(type='LoggerHook', interval=5))
randomness = dict(seed=0)
