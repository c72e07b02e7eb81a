# DCAL-ViT-Base/16 (ImageNet-21k) on Stanford Cars (196 classes) at 448x448 (recipe: _dcal_fgvc.py,
# _dcal_fgvc_vit_base.py). Paper (Table 1, third-party transcription): ViT-B 92.5 -> 93.4 top-1 with DCAL.
# Not reproduced here. data_root: the folder with devkit/, cars_train/, cars_test/ (zoo/data/fgvc.py).
_base_ = ['./_dcal_fgvc_vit_base.py']

data_root = 'data/stanford_cars'
train_dataloader = dict(dataset=dict(type='StanfordCarsDataset', data_root=data_root, split='train'))
val_dataloader = dict(dataset=dict(type='StanfordCarsDataset', data_root=data_root, split='test'))
test_dataloader = val_dataloader
model = dict(model_kwargs=dict(num_classes=196))
