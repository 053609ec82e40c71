"""Every SAM 2 / SAM 2.1 size's hyperparameters, in one place.

The values are those of Meta's released configs (`sam2/configs/sam2*/sam2*_hiera_*.yaml`).
Choices shared by every released checkpoint (high-resolution features in the decoder, object
score prediction, MLP object-pointer projection, no-memory embedding added directly on the
first frame, multimask on single clicks and while tracking) are built into the model; what
differs between sizes or versions is spelled out here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sam2_ros.engine.image_encoder import HieraConfig, ImageEncoderConfig
from sam2_ros.engine.mask_decoder import MaskDecoderConfig
from sam2_ros.engine.memory_attention import MemoryAttentionConfig
from sam2_ros.engine.memory_encoder import MemoryEncoderConfig
from sam2_ros.engine.prompt_encoder import PromptEncoderConfig

VERSIONS = ("2.0", "2.1")
BACKBONE_STRIDE = 16  # image pixels per cell of the lowest-resolution feature map used


@dataclass(frozen=True)
class SAM2Config:
    """Model-level settings plus the submodule configs; defaults are SAM 2.1 tiny at 1024."""

    size: str = "tiny"
    version: str = "2.1"
    image_size: int = 1024
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    prompt_encoder: PromptEncoderConfig = field(default_factory=PromptEncoderConfig)
    mask_decoder: MaskDecoderConfig = field(default_factory=MaskDecoderConfig)
    memory_attention: MemoryAttentionConfig = field(default_factory=MemoryAttentionConfig)
    memory_encoder: MemoryEncoderConfig = field(default_factory=MemoryEncoderConfig)
    hidden_dim: int = 256  # image feature / SAM token channels
    mem_dim: int = 64  # memory channels (memory encoder out_dim)
    num_maskmem: int = 7  # the current frame + 6 previous frames of spatial memory
    sigmoid_scale_for_mem_enc: float = 20.0  # mask probabilities are scaled ...
    sigmoid_bias_for_mem_enc: float = -10.0  # ... and shifted before the memory encoder
    max_obj_ptrs_in_encoder: int = 16  # object pointers of up to this many frames
    multimask_max_points: int = 1  # multimask output when a prompt has at most this many points
    # SAM 2.1 additions (all False in SAM 2.0):
    no_obj_embed_spatial: bool = True  # learned embedding added to memories of absent objects
    add_tpos_enc_to_obj_ptrs: bool = True  # temporal encoding of object pointers
    proj_tpos_enc_in_obj_ptrs: bool = True  # ... projected by a linear layer (obj_ptr_tpos_proj)
    use_signed_tpos_enc_to_obj_ptrs: bool = True  # ... of the signed frame distance

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise ValueError(f"unknown SAM 2 version {self.version!r}; expected one of {VERSIONS}")
        multiple = 2 * BACKBONE_STRIDE  # the trunk's last stage runs at stride 32
        if self.image_size <= 0 or self.image_size % multiple:
            raise ValueError(f"image_size must be a positive multiple of {multiple}, got {self.image_size}")
        if self.proj_tpos_enc_in_obj_ptrs and not self.add_tpos_enc_to_obj_ptrs:
            raise ValueError("proj_tpos_enc_in_obj_ptrs needs add_tpos_enc_to_obj_ptrs")

    @property
    def feature_size(self) -> int:
        """Side of the lowest-resolution feature map (memory attention runs on it)."""
        return self.image_size // BACKBONE_STRIDE


# Hiera trunks of the released checkpoints (identical in SAM 2.0 and 2.1); the sizes differ
# only here. A new size adds its entry, and its other widths in `_WIDTHS`.
_TRUNKS: dict[str, HieraConfig] = {
    "tiny": HieraConfig(
        embed_dim=96,
        num_heads=1,
        stages=(1, 2, 7, 2),
        global_att_blocks=(5, 7, 9),
        window_spec=(8, 4, 14, 7),
        window_pos_embed_bkg_spatial_size=(7, 7),
    ),
    "small": HieraConfig(
        embed_dim=96,
        num_heads=1,
        stages=(1, 2, 11, 2),
        global_att_blocks=(7, 10, 13),
        window_spec=(8, 4, 14, 7),
        window_pos_embed_bkg_spatial_size=(7, 7),
    ),
    "base_plus": HieraConfig(
        embed_dim=112,
        num_heads=2,
        stages=(2, 3, 16, 3),
        global_att_blocks=(12, 16, 20),
        window_spec=(8, 4, 14, 7),
        window_pos_embed_bkg_spatial_size=(14, 14),
    ),
    "large": HieraConfig(
        embed_dim=144,
        num_heads=2,
        stages=(2, 6, 36, 4),
        global_att_blocks=(23, 33, 43),
        window_spec=(8, 4, 16, 8),
        window_pos_embed_bkg_spatial_size=(7, 7),
    ),
    # Not a released size: the project's own small model, trained on generated videos to run
    # offline (weights/sam2_nano.pt). Stages at 256 px: 64, 32, 16, 8 cells a side.
    "nano": HieraConfig(
        embed_dim=32,
        num_heads=1,
        stages=(1, 1, 3, 1),
        global_att_blocks=(3, 5),
        window_spec=(8, 4, 8, 8),
        window_pos_embed_bkg_spatial_size=(7, 7),
    ),
}
SIZES = tuple(_TRUNKS)


@dataclass(frozen=True)
class _Widths:
    """Channels and depths outside the trunk; every released size uses the defaults."""

    hidden_dim: int = 256
    mem_dim: int = 64
    memory_attention_layers: int = 4
    memory_attention_ffn: int = 2048
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16


_WIDTHS: dict[str, _Widths] = {
    "nano": _Widths(
        hidden_dim=64,
        mem_dim=32,
        memory_attention_layers=2,
        memory_attention_ffn=256,
        decoder_heads=4,
        decoder_mlp_dim=256,
        iou_head_hidden_dim=64,
        mask_in_chans=8,
    ),
}

# SAM 2.0 lacks the 2.1 memory and object-pointer refinements.
_VERSION_OVERRIDES: dict[str, dict[str, bool]] = {
    "2.0": dict(
        no_obj_embed_spatial=False,
        add_tpos_enc_to_obj_ptrs=False,
        proj_tpos_enc_in_obj_ptrs=False,
        use_signed_tpos_enc_to_obj_ptrs=False,
    ),
    "2.1": {},
}


def sam2_config(size: str, image_size: int = 1024, version: str = "2.1") -> SAM2Config:
    """The configuration of an official SAM 2 size at any image size (a multiple of 32)."""
    if size not in _TRUNKS:
        raise ValueError(f"unknown SAM 2 size {size!r}; expected one of {SIZES}")
    if version not in _VERSION_OVERRIDES:
        raise ValueError(f"unknown SAM 2 version {version!r}; expected one of {VERSIONS}")
    trunk = _TRUNKS[size]
    widths = _WIDTHS.get(size, _Widths())
    hidden_dim, mem_dim = widths.hidden_dim, widths.mem_dim
    return SAM2Config(
        size=size,
        version=version,
        image_size=image_size,
        image_encoder=ImageEncoderConfig(
            trunk=trunk,
            d_model=hidden_dim,
            backbone_channel_list=trunk.channel_list,
            fpn_top_down_levels=(2, 3),
            scalp=1,
        ),
        prompt_encoder=PromptEncoderConfig(
            embed_dim=hidden_dim,
            image_embedding_size=image_size // BACKBONE_STRIDE,
            input_image_size=image_size,
            mask_in_chans=widths.mask_in_chans,
        ),
        mask_decoder=MaskDecoderConfig(
            transformer_dim=hidden_dim,
            transformer_num_heads=widths.decoder_heads,
            transformer_mlp_dim=widths.decoder_mlp_dim,
            iou_head_hidden_dim=widths.iou_head_hidden_dim,
        ),
        memory_attention=MemoryAttentionConfig(
            d_model=hidden_dim,
            kv_in_dim=mem_dim,
            num_layers=widths.memory_attention_layers,
            dim_feedforward=widths.memory_attention_ffn,
        ),
        memory_encoder=MemoryEncoderConfig(in_dim=hidden_dim, out_dim=mem_dim),
        hidden_dim=hidden_dim,
        mem_dim=mem_dim,
        **_VERSION_OVERRIDES[version],
    )
