# MambaOut-Tiny on ImageNet-1k (yuweihao/MambaOut scripts/train_mambaout_tiny.sh: l.11 model, l.12 drop path 0.2),
# reported top-1 82.7. Schedule, augmentation and batch: _mambaout_in1k.py.
_base_ = ['./_mambaout_in1k.py']

model = dict(model_name='mambaout_tiny', model_kwargs=dict(drop_path_rate=0.2))
