# MEDUSA on RSNA RICORD (COVID-19 positive CXRs with RSNA annotations) in the development code's label files
# labels/ricord_annotated_{train,test}_1.txt (commit ce9a917: 896 / 200 lines), COVIDx layout, 2 classes.
# Reference: the paper's RICORD table (accuracy / sensitivity / PPV / AUC) was not recovered (docs/medusa.md).
_base_ = ['./_medusa_cxr.py']
data_root = 'data/ricord'
dataset = dict(type='COVIDxDataset', data_root=data_root, num_classes=2, img_size=480)
train_dataloader = dict(dataset=dict(dataset, ann_file='ricord_annotated_train_1.txt', img_dir='train'))
val_dataloader = dict(dataset=dict(dataset, ann_file='ricord_annotated_test_1.txt', img_dir='test'))
test_dataloader = val_dataloader
