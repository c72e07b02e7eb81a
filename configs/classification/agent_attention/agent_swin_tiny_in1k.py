# Agent-Swin-T on ImageNet-1k (LeapLabTHU/Agent-Attention cfgs/agent_swin_t.yaml: drop path 0.2,
# per-GPU batch 128), reported top-1 82.6. Schedule: _agent_swin_in1k.py.
_base_ = ['./_agent_swin_in1k.py']

model = dict(model_name='agent_swin_tiny', model_kwargs=dict(drop_path_rate=0.2))
