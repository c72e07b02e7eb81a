# MEDUSA on the RSNA Pneumonia Detection Challenge (Kaggle stage 2 train set; image label = any opacity box),
# RSNAPneumoniaDataset (zoo/data/cxr.py), images converted to PNG; splits by patient-id lists (the development
# code's labels/train_pnemunia.txt: 4814 positive / 2191 negative; its test file changed several times).
# Reference: the paper's RSNA table (accuracy / sensitivity / PPV / AUC) was not recovered (docs/medusa.md).
_base_ = ['./_medusa_cxr.py']
data_root = 'data/rsna-pneumonia'
classes = ('normal', 'pneumonia')
dataset = dict(type='RSNAPneumoniaDataset', data_root=data_root, suffix='.png', img_size=480)
train_dataloader = dict(
    dataset=dict(dataset, _delete_=True, ids_file='train_ids.txt', pipeline={{_base_.train_pipeline}})
)
val_dataloader = dict(dataset=dict(dataset, _delete_=True, ids_file='test_ids.txt', pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader
val_evaluator = dict(type='CXRReport', classes=classes)
test_evaluator = val_evaluator
