# Agent-DeiT-S on ImageNet-1k (LeapLabTHU/Agent-Attention cfgs/agent_deit_s.yaml: drop path 0.1,
# per-GPU batch 128), reported top-1 80.5. Schedule: _agent_deit_in1k.py.
_base_ = ['./_agent_deit_in1k.py']

model = dict(model_name='agent_deit_small', model_kwargs=dict(drop_path_rate=0.1))
