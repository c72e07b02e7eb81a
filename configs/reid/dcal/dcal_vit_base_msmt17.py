# DCAL-ViT-Base/16 on MSMT17 (1,041 training identities, 256x128; recipe: _dcal_reid.py).
# Paper (Re-ID table, third-party transcription): ViT-B 61.6 / 81.4 -> 64.0 mAP / 83.1 rank-1 with DCAL.
# Not reproduced here (the paper: 9.5 h on one GPU). data_root: MSMT17/ (zoo/data/reid.py lists the layouts).
_base_ = ['./_dcal_reid.py']

data_root = 'data/MSMT17'
train_dataloader = dict(dataset=dict(type='MSMT17Dataset', data_root=data_root))
val_dataloader = dict(dataset=dict(type='MSMT17Dataset', data_root=data_root))
test_dataloader = val_dataloader
model = dict(model_kwargs=dict(num_classes=1041))
