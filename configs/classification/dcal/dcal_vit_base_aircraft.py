# DCAL-ViT-Base/16 (ImageNet-21k) on FGVC-Aircraft (100 variants) at 448x448 (recipe: _dcal_fgvc.py,
# _dcal_fgvc_vit_base.py). Paper (Table 1, third-party transcription): ViT-B 90.0 -> 91.5 top-1 with DCAL.
# Not reproduced here. Trained on trainval (6,667 images), evaluated on test (3,333), the usual protocol
# [inferred: the paper does not name the split]. data_root: fgvc-aircraft-2013b/.
_base_ = ['./_dcal_fgvc_vit_base.py']

data_root = 'data/fgvc-aircraft-2013b'
train_dataloader = dict(dataset=dict(type='FGVCAircraftDataset', data_root=data_root, split='trainval'))
val_dataloader = dict(dataset=dict(type='FGVCAircraftDataset', data_root=data_root, split='test'))
test_dataloader = val_dataloader
model = dict(model_kwargs=dict(num_classes=100))
