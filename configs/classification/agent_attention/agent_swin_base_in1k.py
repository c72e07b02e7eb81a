# Agent-Swin-B on ImageNet-1k (LeapLabTHU/Agent-Attention cfgs/agent_swin_b.yaml: drop path 0.5,
# per-GPU batch 64), reported top-1 84.0. Schedule: _agent_swin_in1k.py.
_base_ = ['./_agent_swin_in1k.py']

model = dict(model_name='agent_swin_base', model_kwargs=dict(drop_path_rate=0.5))
train_dataloader = dict(batch_size=64)
