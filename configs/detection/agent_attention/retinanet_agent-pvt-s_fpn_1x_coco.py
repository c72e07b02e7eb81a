# Agent-PVT-S + RetinaNet (FPN), 1x, COCO 2017 boxes.
# Paper: Agent Attention (arXiv 2312.08874), official downstream README, RetinaNet 1x Agent-PVT-S:
#   44.1 box AP. Recipe as Agent-PVT-T (official agent_pvt_s_rtn_1x).
_base_ = ['./retinanet_agent-pvt-t_fpn_1x_coco.py']
model = dict(backbone=dict(model_name='agent_pvt_small'))
