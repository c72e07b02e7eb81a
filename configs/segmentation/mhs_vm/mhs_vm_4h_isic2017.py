# MHS-VM 4 heads on ISIC 2017: the ISIC 2018 recipe with the official ISIC 2017 threshold gfu_t=0.0.
_base_ = ['./mhs_vm_4h_isic2018.py']

data_root = 'data/isic2017/'
model = dict(net=dict(gfu_t=0.0))
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
