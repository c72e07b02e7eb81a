# MHS-VM with 3 heads (patterns C, X, S; 17.39M params) on ISIC 2018, same recipe as the 4-head model.
_base_ = ['./mhs_vm_4h_isic2018.py']

model = dict(net=dict(variant='mhs_vm_unet_3h'))
