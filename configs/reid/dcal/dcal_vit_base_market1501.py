# DCAL-ViT-Base/16 on Market-1501 (751 training identities, 256x128; recipe: _dcal_reid.py).
# Paper (Re-ID table, third-party transcription): ViT-B 87.1 / 94.3 -> 87.5 mAP / 94.7 rank-1 with DCAL.
# Not reproduced here. data_root: Market-1501-v15.09.15/ (bounding_box_train/, query/, bounding_box_test/).
_base_ = ['./_dcal_reid.py']
