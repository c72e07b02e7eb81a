# The smaller student of the segmentation distillation smoke config:
# ../segmentation/upernet_test-mambaout_fixture.py with a 32-channel UPerNet decode head and a 16-channel
# auxiliary head (the teacher's are 64 and 32). Trains on its own too (the no-distillation run).
_base_ = ['../segmentation/upernet_test-mambaout_fixture.py']
model = dict(
    decode_head=dict(channels=32),
    auxiliary_head=dict(channels=16),
)
