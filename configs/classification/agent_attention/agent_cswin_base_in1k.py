# Agent-CSwin-B on ImageNet-1k (LeapLabTHU/Agent-Attention cfgs/agent_cswin_b.yaml: drop path 0.5,
# per-GPU batch 64, weight decay 0.1), reported top-1 84.7. Schedule and EMA: _agent_cswin_in1k.py.
_base_ = ['./_agent_cswin_in1k.py']

model = dict(model_name='agent_cswin_base', model_kwargs=dict(drop_path_rate=0.5))
train_dataloader = dict(batch_size=64)
optim_wrapper = dict(optimizer=dict(weight_decay=0.1))
