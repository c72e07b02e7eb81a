# Logit KD baseline (Hinton et al. 2015, tau = 4) on the digits pair: KL between the heads' softened outputs.
_base_ = ['./_mambaout-femto_test-resnet_digits.py']
model = dict(
    distiller=dict(
        student_recorders=dict(logits=dict(type='ModuleOutputs', source='backbone')),
        teacher_recorders=dict(logits=dict(type='ModuleOutputs', source='backbone')),
        distill_losses=dict(loss_kd=dict(type='LogitKDLoss', tau=4.0, loss_weight=1.0)),
        loss_forward_mappings=dict(
            loss_kd=dict(
                s_logits=dict(from_student=True, recorder='logits'),
                t_logits=dict(from_student=False, recorder='logits'),
            )
        ),
    )
)
