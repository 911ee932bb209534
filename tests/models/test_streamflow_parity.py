"""StreamFlow parity with the official outputs (../shared/parity/streamflow.npz, SPEC sections 1-3, 7, 10).

Weights come from the recipe with the fixture's salt (every checksum verified first), are saved in the
official training layout ``{'model': {'module.<key>': tensor}}`` and loaded through
``create_model("streamflow", checkpoint=path)``, the path of a downloaded ``streamflow-*.pth``. Frame
size, iteration count and every expected shape come from the arrays. One cold and one warm-start
forward are run per module (each returns every iteration, the final flow and the low-res flow).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motionflow.models import create_model
from motionflow.models.streamflow import UNUSED_KEYS

ATOL = 2e-4  # SPEC section 3: full-resolution flows
ATOL_LOW = 5e-5  # low-resolution flows


def _frames(fx) -> torch.Tensor:
    """``input_images`` (T, B, 3, H, W) -> our layout (B, T, 3, H, W)."""
    return fx.tensor("input_images").permute(1, 0, 2, 3, 4).contiguous()


def _per_pair_first(t: torch.Tensor) -> torch.Tensor:
    """Our ``(B, S, ...)`` -> the fixture's pair-major ``(S, B, ...)``."""
    return t.transpose(0, 1)


class _Capture:
    """First-call module outputs / arguments of the cold forward (forward hooks never alter values)."""

    def __init__(self, model):
        self.values: dict = {}
        self.handles = []
        ub = model.update_block
        self._out("fnet", model.fnet)
        self._out("cnet", model.cnet)
        self._out("att", model.att)
        self._out("motion", ub.encoder)
        self._out("aggregate", ub.aggregator)
        self._out("temporal", ub.transformer_block)
        self._out("update", ub)
        self._args("update_args", ub)
        self._args("fnet_stage2_in", model.fnet.svt.patch_embeds[1])

    def _out(self, name, module):
        def hook(m, args, out):
            self.values.setdefault(name, out)

        self.handles.append(module.register_forward_hook(hook))

    def _args(self, name, module):
        def hook(m, args):
            self.values.setdefault(name, args)

        self.handles.append(module.register_forward_pre_hook(hook))

    def remove(self):
        for h in self.handles:
            h.remove()


@pytest.fixture(scope="module")
def streamflow_case(parity_fixture, tmp_path_factory):
    fx = parity_fixture("streamflow")
    ckpt = fx.checkpoint_file(tmp_path_factory.mktemp("streamflow_ckpt"))  # verifies every checksum first
    model = create_model("streamflow", checkpoint=ckpt)
    iters = fx["expected_flow_predictions"].shape[0]
    frames = _frames(fx)
    flow_init = fx.tensor("input_flow_init").permute(1, 0, 2, 3, 4).contiguous()  # (B, S, 2, h, w)
    cap = _Capture(model)
    with torch.no_grad():
        cold = model(frames, iters=iters, all_iterations=True)
        cap.remove()
        warm = model(frames, iters=iters, flow_init=flow_init, all_iterations=True)
    return fx, model, cold, warm, cap.values


def test_streamflow_parity_cold(streamflow_case):
    fx, _, cold, _, _ = streamflow_case
    preds = torch.stack([_per_pair_first(p) for p in cold.predictions])  # (I, S, B, 2, H, W)
    fx.assert_close("expected_flow_predictions", preds, atol=ATOL)
    fx.assert_close("expected_flow_final", _per_pair_first(cold.flow), atol=ATOL)


def test_streamflow_parity_warm_start(streamflow_case):
    fx, _, _, warm, _ = streamflow_case
    preds = torch.stack([_per_pair_first(p) for p in warm.predictions])
    fx.assert_close("expected_warm_flow_predictions", preds, atol=ATOL)
    fx.assert_close("expected_warm_flow_final", _per_pair_first(warm.flow), atol=ATOL)
    fx.assert_close("expected_warm_flow_low", _per_pair_first(warm.flow_low), atol=ATOL_LOW)


def test_streamflow_parity_final_is_last_iteration(streamflow_case):
    _, _, cold, warm, _ = streamflow_case
    assert torch.equal(cold.flow, cold.predictions[-1])
    assert torch.equal(warm.flow, warm.predictions[-1])
    # the warm start really changes the result (the fixture's flow_init is not zero)
    assert (cold.flow - warm.flow).abs().max() > 1e-2


def test_streamflow_parity_state_dict_layout(streamflow_case):
    """Our keys, shapes and order are the official ones, minus the never-used Twins final norms."""
    fx, model, _, _, _ = streamflow_case
    official = [(e["key"], tuple(e["shape"])) for e in fx.entries if e["key"] not in UNUSED_KEYS]
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert ours == official
    unused = {e["key"] for e in fx.entries if not e["used_in_forward"]}
    assert unused == set(UNUSED_KEYS)


def _check(fx, name: str, got: torch.Tensor) -> None:
    ref = fx[name]
    got = got.detach().float().numpy()
    assert got.shape == ref.shape, f"{name}: shape {got.shape}, expected {ref.shape}"
    tol = max(1e-4 * np.abs(ref).max(), 1e-6)  # SPEC section 10: >= 40x the thread-count noise
    diff = np.abs(got - ref).max()
    assert diff <= tol, f"{name}: max|diff| {diff:.3g} > {tol:.3g}"


def test_streamflow_parity_intermediates(streamflow_case):
    """Encoder and first-iteration tensors (public fixture only; skipped for other fixture files)."""
    fx, _, _, _, v = streamflow_case
    if "inter_fnet" not in fx:
        pytest.skip("fixture has no inter_* arrays (only the public files do)")
    b, t = _frames(fx).shape[:2]
    stage1 = v["fnet_stage2_in"][0]  # (B*T, 128, H/4, W/4), the input of patch_embeds[1]
    stage1 = stage1.reshape(b, t, *stage1.shape[1:])
    _check(fx, "inter_fnet_stage1", stage1[:, :, ::8])
    _check(fx, "inter_fnet", v["fnet"][:, :, ::4])
    _check(fx, "inter_cnet", v["cnet"][:, :, ::4])
    net, inp, corr, flow, attention = v["update_args"]
    assert float(flow.abs().max()) == 0.0  # cold start: zero flow at iteration 1
    _check(fx, "inter_net_init", net)
    _check(fx, "inter_inp", inp)
    w = fx["inter_gma_attention"].shape[2]
    _check(fx, "inter_gma_attention", attention[:, :, :w])
    _check(fx, "inter_corr_iter1", corr)
    _check(fx, "inter_motion_iter1", v["motion"])
    _check(fx, "inter_gma_aggregate_iter1", v["aggregate"])
    _check(fx, "inter_temporal_iter1", v["temporal"])
    net1, mask1, delta1 = v["update"]
    _check(fx, "inter_net_iter1", net1)
    _check(fx, "inter_delta_flow_iter1", delta1)
    _check(fx, "inter_up_mask_iter1", mask1[:, :, ::64])


def test_streamflow_parity_memory_bounded(streamflow_case, memory_bounded):
    """Every memory-bounded path forced on (on-demand correlation, fused Twins sub-sampled attention, LSA
    and MLP in chunks, GMA attention as factors; the method switches them on for large frames): the same
    flows at the same tolerances."""
    fx, model, _, _, _ = streamflow_case
    iters = fx["expected_flow_predictions"].shape[0]
    with memory_bounded(model), torch.no_grad():
        out = model(_frames(fx), iters=iters)
    assert out.predictions == []
    fx.assert_close("expected_flow_final", _per_pair_first(out.flow), atol=ATOL)
