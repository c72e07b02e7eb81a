# DCAL-DeiT-Small on CUB-200-2011 at 448x448 (recipe: _dcal_fgvc.py).
# Paper (Table 1, third-party transcription): DeiT-S 85.8 -> 87.6 top-1 with DCAL. Not reproduced here.
_base_ = ['./_dcal_fgvc.py']
model = dict(model_name='dcal_deit_small_patch16_448')
