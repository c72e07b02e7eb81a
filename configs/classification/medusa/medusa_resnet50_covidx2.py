# MEDUSA (COVIDNet-CXR-3) on COVIDx, 2 classes (COVID-19 negative / positive), test = the 400 images of
# labels/test_COVIDx9B.txt (identical to test_COVIDx8B.txt: 200 negative / 200 positive).
# Reference (COVID-Net README / docs/models.md, master@1090a2f): accuracy 98.3 %, sensitivity 99.0 / 97.5,
# PPV 97.5 / 99.0 (negative / positive); 29.2M params, 29.1 GMACs (ours: 29.09M, see docs/medusa.md).
_base_ = ['./_medusa_cxr.py']
