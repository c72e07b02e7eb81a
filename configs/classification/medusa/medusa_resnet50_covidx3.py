# MEDUSA on COVIDx, 3 classes (normal / pneumonia / COVID-19) in the older COVIDx label files
# (train_COVIDx*.txt with normal / pneumonia / COVID-19 labels). The MEDUSA paper's 3-class numbers were not
# recovered (docs/medusa.md); the released CXR-3 model and its reference numbers are 2-class
# (medusa_resnet50_covidx2.py: accuracy 98.3 %, sensitivity 99.0 / 97.5, PPV 97.5 / 99.0).
_base_ = ['./_medusa_cxr.py']
num_classes = 3
classes = ('normal', 'pneumonia', 'COVID-19')
train_ann, test_ann = 'train_COVIDx.txt', 'test_COVIDx.txt'
data_root = 'data/COVIDx'
dataset = dict(type='COVIDxDataset', data_root=data_root, num_classes=num_classes, img_size=480)
train_dataloader = dict(dataset=dict(dataset, ann_file=train_ann, img_dir='train'))
val_dataloader = dict(dataset=dict(dataset, ann_file=test_ann, img_dir='test'))
test_dataloader = val_dataloader
val_evaluator = dict(type='CXRReport', classes=classes)
test_evaluator = val_evaluator
model = dict(model_kwargs=dict(num_classes=num_classes))
