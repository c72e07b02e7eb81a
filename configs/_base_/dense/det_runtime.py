# mmdet's default runtime plus the zoo additions: load the ZooBackbone adapter, keep only the last
# checkpoint plus the best one, and add the zoo's progress bar and loss curve (curves.png/json).
_base_ = ['mmdet::_base_/default_runtime.py']
custom_imports = dict(imports=['zoo.mm'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1, save_best='auto'))
custom_hooks = [dict(type='zoo.ProgressBarHook'), dict(type='zoo.TrainingCurveHook')]
