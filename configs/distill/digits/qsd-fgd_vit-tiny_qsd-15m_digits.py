# QSD-Transformer's fine-grained distillation (QSD, arXiv 2501.13492) in the one distiller: the token-similarity
# (Gram) matrices of each student Q-SDSA block's query / key spikes are matched to a ViT teacher's query / key
# tokens (QSDFineGrainedLoss, one per block, weight 1 / 4: the same value as FGDDistiller's fgd_weight=1.0, which
# configs/classification/qsd_transformer/qsd_transformer_tiny_fgd_digits.py still runs). No paper numbers exist
# for digits. Student: the small QSD-Transformer of qsd_transformer_tiny_digits.py (4-bit weights, T = 1; 4
# attention blocks at 2x2 tokens); tools/test.py takes the exported student.safetensors with that config.
# Teacher: vit-tiny-p4_digits.py (train it first), blocks 0, 2, 3, 5 of 6 (evenly spread, as FGDDistiller does).
_base_ = ['../../classification/qsd_transformer/qsd_transformer_tiny_digits.py']
__student = ('block3.0', 'block3.1', 'block3.2', 'block4.0')  # the Q-SDSA blocks (.attn)
__teacher = (0, 2, 3, 5)  # the ViT blocks matched to them
model = dict(
    _delete_=True,
    type='SingleTeacherDistiller',
    architecture=dict(
        type='TimmClassifier',
        model_name='qsd_transformer_15m',
        model_kwargs=dict(
            num_classes=10, img_size=32, T=1, embed_dim=(16, 32, 64, 64), depths=4, act_placeholders=False
        ),
        label_smoothing=0.1,
    ),
    teacher=dict(
        type='TimmClassifier',
        model_name='vit_tiny_patch16_224',
        model_kwargs=dict(num_classes=10, img_size=32, patch_size=4, depth=6),
    ),
    teacher_ckpt='work_dirs/vit-tiny-p4_digits/model.safetensors',
    distiller=dict(
        student_recorders={
            f'{kind}{i}': dict(type='ModuleOutputs', source=f'backbone.{b}.attn.{kind}_lif')
            for i, b in enumerate(__student)
            for kind in ('q', 'k')
        },
        teacher_recorders={
            f'qkv{i}': dict(type='ModuleOutputs', source=f'backbone.blocks.{t}.attn.qkv')
            for i, t in enumerate(__teacher)
        },
        distill_losses={
            f'loss_qsd{i}': dict(type='QSDFineGrainedLoss', T=1, num_prefix_tokens=1, loss_weight=1.0 / len(__student))
            for i in range(len(__student))
        },
        loss_forward_mappings={
            f'loss_qsd{i}': dict(
                s_q=dict(from_student=True, recorder=f'q{i}'),
                s_k=dict(from_student=True, recorder=f'k{i}'),
                t_qkv=dict(from_student=False, recorder=f'qkv{i}'),
            )
            for i in range(len(__student))
        },
    ),
)
custom_hooks = [
    dict(type='ProgressBarHook'),
    dict(type='TrainingCurveHook'),
    # the plain student (timm keys): tools/test.py takes it with qsd_transformer_tiny_digits.py
    dict(type='ExportSafetensorsHook', filename='student.safetensors'),
]
