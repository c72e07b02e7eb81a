# Agent-Swin-S on ImageNet-1k (LeapLabTHU/Agent-Attention cfgs/agent_swin_s.yaml: drop path 0.3,
# per-GPU batch 128), reported top-1 83.7. Schedule: _agent_swin_in1k.py.
_base_ = ['./_agent_swin_in1k.py']

model = dict(model_name='agent_swin_small', model_kwargs=dict(drop_path_rate=0.3))
