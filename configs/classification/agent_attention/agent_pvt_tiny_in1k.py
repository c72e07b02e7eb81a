# Agent-PVT-T on ImageNet-1k (LeapLabTHU/Agent-Attention cfgs/agent_pvt_t.yaml: drop path 0.1,
# per-GPU batch 128, CLIP_GRAD None), reported top-1 78.4. Schedule: _agent_pvt_in1k.py.
_base_ = ['./_agent_pvt_in1k.py']

model = dict(model_name='agent_pvt_tiny', model_kwargs=dict(drop_path_rate=0.1))
optim_wrapper = dict(clip_grad=None)
