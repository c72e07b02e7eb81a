# Agent-CSwin-S on ImageNet-1k (LeapLabTHU/Agent-Attention cfgs/agent_cswin_s.yaml: drop path 0.4,
# per-GPU batch 128), reported top-1 83.9. Schedule and EMA: _agent_cswin_in1k.py.
_base_ = ['./_agent_cswin_in1k.py']

model = dict(model_name='agent_cswin_small', model_kwargs=dict(drop_path_rate=0.4))
