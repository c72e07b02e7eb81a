# Agent-DeiT-T on ImageNet-1k (LeapLabTHU/Agent-Attention cfgs/agent_deit_t.yaml: drop path 0.0,
# per-GPU batch 512), reported top-1 74.9. Schedule: _agent_deit_in1k.py.
_base_ = ['./_agent_deit_in1k.py']

model = dict(model_name='agent_deit_tiny', model_kwargs=dict(drop_path_rate=0.0))
train_dataloader = dict(batch_size=512)
