# Runtime shared by every zoo config: zoo registry scope, checkpoints (last + best), text and
# TensorBoard logs, training-curve PNG, seed. Task configs override what differs.
default_scope = 'zoo'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Keeps the last checkpoint (for --resume) and the best one by the first metric. Checkpoints carry
    # everything the run depends on (weights, optimiser, schedulers, EMA, RNG states, the position in the
    # epoch, the curves), so --resume continues the uninterrupted trajectory exactly. For long epochs,
    # save every N iterations instead of every epoch (a resume then starts at the exact batch):
    #   --cfg-options default_hooks.checkpoint.by_epoch=False default_hooks.checkpoint.interval=500
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1, save_best='auto'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
custom_hooks = [
    dict(type='ProgressBarHook'),
    dict(type='TrainingCurveHook'),
    # Unreadable images are left out of their batch (not replaced) and listed at the end of the run.
    dict(type='SkippedSamplesHook'),
]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),  # tools/train.py switches to gloo when there is no GPU
)

vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends, name='visualizer')

log_processor = dict(type='LogProcessor', window_size=20, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
# seed: every RNG, the sampler's shuffle and per-batch data-loader worker seeds derive from it.
# deterministic=True also selects deterministic CUDA kernels (needed for bit-identical GPU runs).
randomness = dict(seed=0, deterministic=False)
