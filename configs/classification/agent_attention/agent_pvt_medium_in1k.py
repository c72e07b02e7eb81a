# Agent-PVT-M on ImageNet-1k (LeapLabTHU/Agent-Attention cfgs/agent_pvt_m.yaml: drop path 0.3,
# per-GPU batch 128, CLIP_GRAD 1.0), reported top-1 83.4. Schedule: _agent_pvt_in1k.py.
_base_ = ['./_agent_pvt_in1k.py']

model = dict(model_name='agent_pvt_medium', model_kwargs=dict(drop_path_rate=0.3))
