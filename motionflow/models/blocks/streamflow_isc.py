"""ISC: StreamFlow's Integrative Spatio-temporal Coherence encoder (official ``Twins_CSC``).

The encoder is the first two stages of Twins-SVT-Large (:class:`~motionflow.models.blocks.twins.TwinsSVT`;
1/8 resolution, 256 channels). ISC changes only *how the frames enter it*, with **zero extra
parameters**:

* every frame is patch-embedded on its own (conv k = s = 4, then k = s = 2; LayerNorm eps 1e-5);
* the T frames' tokens are then **stacked along the height axis** into one tall image of
  ``(T * H/4, W/4)`` tokens (resp. ``(T * H/8, W/8)``), so the Twins stages (7 x 7 locally-grouped
  attention padded at the bottom/right of the whole tall image, the 3 x 3 PosConv, the globally
  sub-sampled attention with sr 8 / 4) all cross frame boundaries: each frame's features see the
  neighbouring frames.

State-dict names are timm's under ``svt.``: ``svt.patch_embeds.{0,1}.{proj,norm}``,
``svt.blocks.{0,1}.{0,1}.*``, ``svt.pos_block.{0,1}.proj.0.*``. The official files also carry
``svt.norm.{weight,bias}`` (the 1024-channel norm after stage 4), which never runs; it is not built
here and the checkpoint loader accepts it by name as unused.

Deviation: the official code runs timm 0.9.16, whose attention is the fused
``scaled_dot_product_attention``; the shared Twins blocks compute ``softmax(q k^T * scale) v``
explicitly below their memory budget (the fused kernel above it, e.g. at 1080p). The SPEC measures
this difference at max 2.3e-5 px on the final flow.
"""

from __future__ import annotations

import torch
from torch import nn

from motionflow.models.blocks.twins import TwinsSVT

__all__ = ["stack_frames", "unstack_frames", "ISCTwinsEncoder"]


def stack_frames(tokens: torch.Tensor, frames: int) -> torch.Tensor:
    """Stack per-frame tokens along height.

    Args:
        tokens: ``(B*T, h*w, C)`` tokens of every frame (b-major, frame-minor).
        frames: T.

    Returns:
        ``(B, T*h*w, C)``: the tokens of the tall ``(T*h, w)`` image (frame 0 on top).
    """
    bt, n, c = tokens.shape
    return tokens.reshape(bt // frames, frames * n, c)


def unstack_frames(tokens: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`stack_frames` to feature maps: ``(B, T*h*w, C)`` -> ``(B, T, C, h, w)``."""
    b, _, c = tokens.shape
    return tokens.reshape(b, frames, height, width, c).permute(0, 1, 4, 2, 3)


class ISCTwinsEncoder(nn.Module):
    """Twins-SVT-Large stages 1-2 over T frames stacked along height (ISC).

    Input ``(B, T, 3, H, W)`` normalised to [-1, 1] (H, W multiples of 8); output
    ``(B, T, 256, H/8, W/8)``. With T = 1 this is the plain per-frame Twins encoder.
    """

    def __init__(self) -> None:
        super().__init__()
        self.svt = TwinsSVT(num_stages=2, keep_final_norm=False)

    def forward(self, frames: torch.Tensor, return_stages: bool = False):
        """Encode a stack of frames.

        Args:
            frames: ``(B, T, 3, H, W)``.
            return_stages: also return the stage-1 maps ``(B, T, 128, H/4, W/4)``.

        Returns:
            ``(B, T, 256, H/8, W/8)`` (and the stage-1 maps when ``return_stages``).
        """
        b, t = frames.shape[:2]
        x = frames
        stages = []
        for stage in range(self.svt.num_stages):
            tokens, (h, w) = self.svt.embed(stage, x.flatten(0, 1))  # per frame: (B*T, h*w, C)
            tokens = self.svt.transform(stage, stack_frames(tokens, t), (t * h, w))  # tall image
            x = unstack_frames(tokens, t, h, w)
            stages.append(x)
        return (x, stages[0]) if return_stages else x
