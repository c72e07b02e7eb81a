# DCAL-ViT-Base/16 (ImageNet-21k) on CUB-200-2011 at 448x448 (recipe: _dcal_fgvc.py, _dcal_fgvc_vit_base.py).
# Paper (Table 1, third-party transcription): ViT-B 90.8 -> 91.4 top-1 with DCAL. Not reproduced here.
_base_ = ['./_dcal_fgvc_vit_base.py']
