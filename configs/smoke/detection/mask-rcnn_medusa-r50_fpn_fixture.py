# Smoke config: MEDUSA's gated stages as a Mask R-CNN backbone (features_only through ZooBackbone), on the
# synthetic COCO-format fixture. Same detector, data and schedule as mask-rcnn_test-mambaout_fpn_fixture.py;
# the backbone is medusa_resnet50 with a slim trunk (one bottleneck per stage, width 16) and a narrow body on
# a 64 px view of the padded batch image, gating the stem and the first three stages (the paper's 4 heads);
# the gated stage outputs (strides 4 / 8 / 16 / 32, 256 / 512 / 1024 / 2048 channels) feed the FPN. Random
# init (no body checkpoint): this checks that the route trains, not MEDUSA's accuracy.
#
#   python tools/make_fixtures.py coco --out data/fixtures/coco
#   OMP_NUM_THREADS=1 python tools/train.py configs/smoke/detection/mask-rcnn_medusa-r50_fpn_fixture.py
_base_ = ['./mask-rcnn_test-mambaout_fpn_fixture.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='ZooBackbone',
        model_name='medusa_resnet50',
        pretrained=None,
        out_indices=(0, 1, 2, 3),
        model_kwargs=dict(
            global_pool='avg',
            body_size=64,
            body_dims=(8, 16, 16, 32, 32),
            body_decoder_dims=(32, 32, 16, 8),
            trunk_kwargs=dict(layers=(1, 1, 1, 1), base_width=16),
        ),
    ),
    neck=dict(in_channels=[256, 512, 1024, 2048]),
)
