# Agent-DeiT-B on ImageNet-1k (LeapLabTHU/Agent-Attention cfgs/agent_deit_b.yaml: drop path 0.3,
# per-GPU batch 128), reported top-1 82.0. Schedule: _agent_deit_in1k.py.
_base_ = ['./_agent_deit_in1k.py']

model = dict(model_name='agent_deit_base', model_kwargs=dict(drop_path_rate=0.3))
