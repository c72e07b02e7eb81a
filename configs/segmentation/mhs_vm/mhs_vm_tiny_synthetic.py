# Smoke-test / demo config: a tiny MHS-VM U-Net on synthetic lesions (no download, ~1 min on CPU).
#   python tools/train.py configs/segmentation/mhs_vm/mhs_vm_tiny_synthetic.py
#   python tools/test.py configs/segmentation/mhs_vm/mhs_vm_tiny_synthetic.py work_dirs/.../best_*.pth
_base_ = ['./mhs_vm_4h_isic2018.py']

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
        gfu_t=0.0,
        drop_path_rate=0.0,
        img_size=img_size,
    )
)
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(_delete_=True, type='SyntheticLesionDataset', num_samples=80, img_size=img_size, seed=0),
)
val_dataloader = dict(
    batch_size=16,
    num_workers=0,
    dataset=dict(_delete_=True, type='SyntheticLesionDataset', num_samples=16, img_size=img_size, seed=1),
)
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = []  # constant lr: the run is too short for a decay to help
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(logger=dict(type='LoggerHook', interval=5))
randomness = dict(seed=0)
