# Agent-PVT-S + Mask R-CNN (FPN), 1x, COCO 2017 instances.
# Paper: Agent Attention (arXiv 2312.08874), official downstream README, Mask R-CNN 1x Agent-PVT-S:
#   44.5 box AP / 41.2 mask AP. Recipe as Agent-PVT-T (official agent_pvt_s_mrcnn_1x).
_base_ = ['./mask-rcnn_agent-pvt-t_fpn_1x_coco.py']
model = dict(backbone=dict(model_name='agent_pvt_small'))
