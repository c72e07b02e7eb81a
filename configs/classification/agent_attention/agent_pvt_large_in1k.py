# Agent-PVT-L on ImageNet-1k (LeapLabTHU/Agent-Attention cfgs/agent_pvt_b.yaml: drop path 0.3,
# per-GPU batch 64, CLIP_GRAD 1.0), reported top-1 83.7. Schedule: _agent_pvt_in1k.py.
_base_ = ['./_agent_pvt_in1k.py']

model = dict(model_name='agent_pvt_large', model_kwargs=dict(drop_path_rate=0.3))
train_dataloader = dict(batch_size=64)
