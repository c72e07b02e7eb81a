"""Building blocks shared by zoo model families (one concept per file, no model assembly).

Every public block is importable from here (``from zoo.layers import AgentAttention``); each module's
``__all__`` lists its own. One exception: the function ``selective_scan`` shares its module's name, so it
stays in ``zoo.layers.selective_scan`` (exporting it here would hide that module from
``import zoo.layers.selective_scan as ...``).
"""

from zoo.layers.agent_attention import (
    AgentAttention,
    AgentAttentionCore,
    adapt_agent_bias,
    adaptive_pool_matrix,
    expand_attn_type,
    init_agent_biases,
    pos_embed_for_grid,
    resize_agent_bias,
    tokens_to_grid,
)
from zoo.layers.amp_conv import SmallGridDepthwiseConv2d, small_grid_depthwise_convs
from zoo.layers.cpu_fusion import FusedMlp, fused_linear_ok, linear_bias, linear_gelu, linear_split
from zoo.layers.cross_attention import (
    GLCABlock,
    agent_attention_forward,
    attention_with_head_mean,
    block_forward,
    check_dcal_block,
    glca_forward,
    multi_head_attention,
    project_output,
    project_qkv,
)
from zoo.layers.encoder_decoder_attention import GRAY_WEIGHTS, GateHead, UNetBody, body_view, gate_fuse
from zoo.layers.fast_inference import (
    CompileState,
    bf16_autocast,
    bf16_forward,
    compile_failed,
    compile_module,
    float32_region,
    prepare_inference,
)
from zoo.layers.multi_head_scan import (
    PATTERNS,
    MambaEngine,
    MultiHeadScan,
    ScanHead,
    ScanRouteAttention,
    ScanRoutes,
    pattern_routes,
    route_order,
    run_engines,
)
from zoo.layers.rollout import fuse_heads, num_local_queries, rollout_cls_row, select_local_queries
from zoo.layers.selective_scan import get_scan_backend, selective_scan_sequential, set_scan_backend
from zoo.layers.spiking import (
    ActLSQ,
    BNAndPad,
    Conv1dLSQ,
    Conv2dLSQ,
    LinearLSQ,
    MultiSpike,
    MultiStepLIF,
    RepConv,
    integrate,
    is_spiking_neuron,
    lsq_quantize,
    set_spike_driven,
    synapse,
)
from zoo.layers.weight_init import init_linear_layernorm

__all__ = [
    # agent attention (Agent Attention, ECCV 2024)
    'AgentAttention',
    'AgentAttentionCore',
    'adapt_agent_bias',
    'expand_attn_type',
    'init_agent_biases',
    'pos_embed_for_grid',
    'resize_agent_bias',
    'tokens_to_grid',
    'adaptive_pool_matrix',
    # depthwise convolutions on maps no larger than the kernel (cropped taps; float32 in bf16-autocast training)
    'SmallGridDepthwiseConv2d',
    'small_grid_depthwise_convs',
    # fused float32 CPU inference (oneDNN linear + bias / GELU)
    'FusedMlp',
    'fused_linear_ok',
    'linear_bias',
    'linear_gelu',
    'linear_split',
    # global-local / pair-wise cross attention (DCAL)
    'GLCABlock',
    'agent_attention_forward',
    'attention_with_head_mean',
    'block_forward',
    'check_dcal_block',
    'glca_forward',
    'multi_head_attention',
    'project_output',
    'project_qkv',
    # the fast inference path: bfloat16 autocast, torch.compile with an eager fallback, channels_last
    'CompileState',
    'bf16_autocast',
    'bf16_forward',
    'compile_failed',
    'compile_module',
    'float32_region',
    'prepare_inference',
    # encoder-decoder self-attention: U-Net body and multi-scale gates (MEDUSA)
    'GRAY_WEIGHTS',
    'GateHead',
    'UNetBody',
    'body_view',
    'gate_fuse',
    # attention rollout
    'fuse_heads',
    'num_local_queries',
    'rollout_cls_row',
    'select_local_queries',
    # selective scan and the multi-head scan of MHS-VM
    'selective_scan',
    'selective_scan_sequential',
    'set_scan_backend',
    'get_scan_backend',
    'PATTERNS',
    'MambaEngine',
    'MultiHeadScan',
    'ScanHead',
    'ScanRouteAttention',
    'ScanRoutes',
    'pattern_routes',
    'route_order',
    'run_engines',
    # spiking neurons and LSQ quantisation (QSD-Transformer)
    'ActLSQ',
    'BNAndPad',
    'Conv1dLSQ',
    'Conv2dLSQ',
    'LinearLSQ',
    'MultiSpike',
    'MultiStepLIF',
    'RepConv',
    'integrate',
    'is_spiking_neuron',
    'lsq_quantize',
    'set_spike_driven',
    'synapse',
    # weight initialisation
    'init_linear_layernorm',
]
