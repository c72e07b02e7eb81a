# WSI pre-processing read by tools/wsi_tile.py, tools/wsi_extract.py and tools/wsi_heatmap.py
# (`--cfg-options wsi.tiling.magnification=10` etc.). Defaults follow the official ACMIL pipeline:
# 512 px patches at 20x resized to 224, ImageNet-supervised ResNet-18 features (512-d), float16.
wsi = dict(
    slide_dir='data/wsi/slides',
    coords_dir='data/wsi/coords',  # <slide>.h5 with the patch grid (tools/wsi_tile.py)
    thumb_dir='data/wsi/thumbnails',  # <slide>.png: tissue mask + grid, for checking
    feat_dir='data/wsi/features',  # <slide>.h5 with feat (N, D), coords (N, 2), extractor cfg
    heatmap_dir='data/wsi/heatmaps',
    tiling=dict(
        patch_size=512,
        magnification=20.0,
        level=0,
        stride=None,
        target_size=224,
        # tissue mask on the pyramid level with downsample closest to seg_downsample
        seg_downsample=64.0,
        method='saturation',
        sthresh=8,
        mthresh=7,
        close=4,
        min_area_patches=0.5,  # drop tissue blobs smaller than half a patch
        min_tissue=0.25,  # keep a patch when >= 25% of it is tissue
        assume_magnification=20.0,  # level-0 magnification of slides without objective power / mpp
        thumbnail_size=1024,
        read_pyramid=True,  # read the coarsest level with >= target_size px/patch (False: as official)
    ),
    extractor=dict(
        model='resnet18.tv_in1k',  # any timm / zoo model name; built with num_classes=0
        pretrained=True,
        checkpoint=None,
        input_size=None,
        model_kwargs=dict(),
        # num_workers 'auto': 2 patch-reading processes when the model runs on the CPU (measured best
        # on 2 cores, benchmarks/wsi_extract.csv), min(8, CPUs) when it runs on a GPU
        batch_size=256,
        num_workers='auto',
        dtype='float16',
        device='auto',
    ),
)
