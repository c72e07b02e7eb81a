# The method part of the COCO MasKD configs (arXiv 2205.14589), the distillation stage: teacher masks, M = 6, on each
# of the 5 FPN outputs of a 256-channel mmdet neck, one 1x1-conv connector per level (MMRazor's align_module conv2d),
# with the authors' settings (hunto/MasKD, mmrazor/configs/distill/maskd/<teacher>-<student>_coco.py): the per-mask
# weighting head, the student-customised masks after a warmup, and the loss weight, per detector.
# MasKD learns the tokens and the weighting head in a first stage and keeps them fixed here: pass a stage-1
# checkpoint as tokens=PATH_OR_URL (with level=i; MasKD's released ones are named in the leaves). Without one the
# tokens and head are learned jointly with the Dice loss, which is not MasKD's procedure.
# A leaf takes its detector's entry next to its pair: _base_ = ['./_<pair>.py', './_maskd_fpn.py'] and
# model = dict(distiller=_base_.pop('fpn_distill')['retinanet']). mmengine drops names that start with '__'.
__levels = ('p3', 'p4', 'p5', 'p6', 'p7')  # the neck's output tuple, data_idx 0..4 (P2-P6 for Faster R-CNN)
__settings = dict(retinanet=(7.0, 7000), faster_rcnn=(1.0, 7330), reppoints=(10.0, 5000))  # loss weight, warmup
fpn_distill = {
    det: dict(
        connectors={f's_{p}': dict(type='ConvModuleConnector', in_channel=256, out_channel=256) for p in __levels},
        distill_losses={
            f'loss_maskd_{p}': dict(
                type='MasKDLoss',
                channels=256,
                num_masks=6,
                tokens=None,
                level=i,
                weight_mask=True,
                custom_mask_warmup=warmup,
                loss_weight=weight,
            )
            for i, p in enumerate(__levels)
        },
        loss_forward_mappings={
            f'loss_maskd_{p}': dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=i, connector=f's_{p}'),
                t_feature=dict(from_student=False, recorder='neck', data_idx=i),
            )
            for i, p in enumerate(__levels)
        },
    )
    for det, (weight, warmup) in __settings.items()
}
