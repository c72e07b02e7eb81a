# mmseg's default runtime plus the zoo additions: load the ZooBackbone adapter and write the loss
# curve (curves.png/json). Iteration-based loops log progress every `logger.interval` iterations,
# so there is no epoch progress bar here. (The checkpoint hook lives in mmseg's schedule files, so
# the leaf configs set max_keep_ckpts / save_best there.)
_base_ = ['mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['zoo.mm'], allow_failed_imports=False)
custom_hooks = [dict(type='zoo.TrainingCurveHook')]
