# Agent-CSwin-T on ImageNet-1k (LeapLabTHU/Agent-Attention cfgs/agent_cswin_t.yaml: drop path 0.2,
# per-GPU batch 128), reported top-1 83.1. Schedule and EMA: _agent_cswin_in1k.py.
_base_ = ['./_agent_cswin_in1k.py']

model = dict(model_name='agent_cswin_tiny', model_kwargs=dict(drop_path_rate=0.2))
