# The smaller student of the distillation smoke config: ../detection/mask-rcnn_test-mambaout_fpn_fixture.py
# with a 32-channel FPN and heads (the teacher's are 64). Trains on its own too (the no-distillation run).
_base_ = ['../detection/mask-rcnn_test-mambaout_fpn_fixture.py']
model = dict(
    neck=dict(out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=128),
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(in_channels=32, conv_out_channels=32),
    ),
)
