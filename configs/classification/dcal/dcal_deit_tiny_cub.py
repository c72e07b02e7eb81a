# DCAL-DeiT-Tiny on CUB-200-2011 at 448x448 (recipe: _dcal_fgvc.py).
# Paper (Table 1, third-party transcription): DeiT-T 82.1 -> 84.6 top-1 with DCAL. Not reproduced here.
# data_root: CUB_200_2011/ (images/, images.txt, train_test_split.txt, image_class_labels.txt).
_base_ = ['./_dcal_fgvc.py']
