"""SCOOP parity with the official code (../shared/parity/scoop.npz, SPEC section "SCOOP").

Lives beside the optical parity tests to share their ``parity_fixture`` (recipe weights with the file's
salt, every checksum verified first). The weights are written as an official SCOOP training file
(``{"args": argparse.Namespace, "model": ..., "optimizer": ..., "scheduler": ...}``) and read back through
:func:`motionflow.sceneflow.point_features.read_point_feature_checkpoint` (``weights_only=True`` with the
Namespace allow-listed). Sizes (N, M), the refinement step count and the fragile rows come from the arrays,
so any fixture of the same schema can be dropped in. Tolerances: SPEC "Suggested assertions".
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from motionflow.ops.smoothness import knn_graph
from motionflow.sceneflow.correspondence import soft_correspondences
from motionflow.sceneflow.point_features import (
    PointFeatureNet,
    edge_offsets,
    load_point_features,
    point_graph,
    read_point_feature_checkpoint,
)
from motionflow.sceneflow.scoop import refine_flow, refinement_loss, training_loss
from motionflow.sceneflow.stopping import StopCriteria


def _scoop_file(fx, directory):
    """The recipe weights as ``scripts/train_scoop.py`` saves a model (options of train_on_kitti_v.sh)."""
    args = argparse.Namespace(
        dataset_name="FlowNet3D_kitti", nb_train_examples=-1, nb_val_examples=-1, same_val_test_kitti=1,
        batch_size_train=4, batch_size_val=10, nb_epochs=400, learning_rate=0.001, use_corr_conf=True,
        linear_corr_conf=0, corr_conf_loss_weight=0.1, nb_points=2048, nb_iter=1, nb_neigh_cross_recon=64,
        use_smooth_flow=True, nb_neigh_smooth_flow=32, smooth_flow_loss_weight=10.0, backward_dist_weight=0.0,
        nb_workers=8, log_dir="kitti_v_100_examples", log_fname="log_train.txt", save_model_epoch=100,
        add_model_suff=True)
    net = PointFeatureNet()
    net.load_state_dict(fx.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1.0 if epoch < 340 else 0.1)
    path = directory / "model_e400.tar"
    torch.save({"args": args, "model": fx.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def scoop_case(parity_fixture, tmp_path_factory):
    fx = parity_fixture("scoop")
    ckpt = read_point_feature_checkpoint(_scoop_file(fx, tmp_path_factory.mktemp("scoop_ckpt")))
    assert ckpt.layout == "scoop" and ckpt.nb_iter == 1 and ckpt.nb_neigh_cross_recon == 64
    net = load_point_features(PointFeatureNet(), ckpt)
    pc1, pc2 = fx.tensor("input_pc1"), fx.tensor("input_pc2")
    with torch.no_grad():
        f1, edges1 = net(pc1)
        f2, edges2 = net(pc2)
    return fx, net, pc1, pc2, f1, f2, edges1, edges2


def _sets(idx) -> np.ndarray:
    return np.sort(np.asarray(idx), axis=-1)


def test_scoop_parity_graphs_and_features(scoop_case):
    fx, net, pc1, pc2, f1, f2, edges1, edges2 = scoop_case
    n = pc1.shape[1]
    for got, name in ((edges1, "expected_graph1_idx"), (edges2, "expected_graph2_idx")):
        assert got.shape == fx[name].shape
        np.testing.assert_array_equal(_sets(got), _sets(fx[name]), err_msg=name)
    np.testing.assert_array_equal(fx["expected_graph1_idx"][0, :, 0], np.arange(n))
    np.testing.assert_array_equal(_sets(point_graph(pc1, method="expanded")), _sets(fx["expected_graph1_idx"]))
    fx.assert_close("expected_feats1", f1, atol=1e-4)
    fx.assert_close("expected_feats2", f2, atol=1e-4)
    if "inter_feat_conv1_pc1" in fx:  # public file only
        with torch.no_grad():
            offsets = edge_offsets(pc1, edges1)
            h1 = net.feat_conv1(pc1.transpose(1, 2), offsets, edges1)
            h2 = net.feat_conv2(h1, offsets, edges1)
        fx.assert_close("inter_feat_conv1_pc1", h1.transpose(1, 2), atol=1e-5)
        fx.assert_close("inter_feat_conv2_pc1", h2.transpose(1, 2), atol=1e-5)


def _check_call(fx, corr, prefix: str, gap_name: str, gap_min: float):
    ok = fx[gap_name][0] >= gap_min
    assert ok.mean() > 0.9, f"{gap_name}: only {ok.sum()} robust rows"
    np.testing.assert_allclose(corr.plan.sum(2).numpy(), fx[prefix + "transport_row_sum"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(corr.plan.sum(1).numpy(), fx[prefix + "transport_col_sum"], rtol=0, atol=1e-6)
    got_idx, want_idx = corr.topk_index[0].numpy(), fx[prefix + "topk_idx"][0]
    assert got_idx.shape == want_idx.shape
    np.testing.assert_array_equal(_sets(got_idx)[ok], _sets(want_idx)[ok])
    # align by target index (near-equal plan values may come in another order)
    og, ow = np.argsort(got_idx, -1), np.argsort(want_idx, -1)
    for name, got, tol in (("topk_weight", corr.topk_weight, 1e-6), ("topk_transport", corr.topk_plan, 1e-8),
                           ("topk_similarity", corr.topk_similarity, 1e-5)):
        if prefix + name not in fx:
            continue
        g = np.take_along_axis(got[0].numpy(), og, -1)[ok]
        w = np.take_along_axis(fx[prefix + name][0], ow, -1)[ok]
        assert np.abs(g - w).max() <= tol, (prefix + name, np.abs(g - w).max())
    flow_err = np.abs(corr.flow[0].numpy() - fx[prefix + "flow_init"][0]).max(-1)
    conf_err = np.abs(corr.confidence[0].numpy() - fx[prefix + "confidence"][0])
    assert flow_err[ok].max() <= 5e-5 and conf_err[ok].max() <= 1e-5, (flow_err[ok].max(), conf_err[ok].max())
    assert flow_err.max() <= 0.5 and conf_err.max() <= 1e-2  # fragile rows: a neighbouring target set
    if prefix + "target_recon" in fx:
        err = np.abs(corr.target[0].numpy() - fx[prefix + "target_recon"][0]).max(-1)
        assert err[ok].max() <= 5e-5


def test_scoop_parity_transport_and_initial_flow(scoop_case):
    fx, net, pc1, pc2, f1, f2, _, _ = scoop_case
    eps, gamma = net.transport_eps(), net.transport_gamma()
    np.testing.assert_allclose(eps.detach().numpy(), fx["expected_epsilon"], rtol=1e-6)
    np.testing.assert_allclose(gamma.detach().numpy(), fx["expected_gamma"], rtol=1e-6)
    np.testing.assert_allclose((gamma / (gamma + eps)).detach().numpy(), fx["expected_power"], rtol=1e-6)
    with torch.no_grad():
        corr = soft_correspondences(pc1, pc2, f1, f2, eps, gamma, iters=1, top_k=64)
    _check_call(fx, corr, "expected_", "expected_topk_boundary_gap", 1e-5)
    if "inter_transport_rows" in fx:
        rows = corr.plan[:, :: max(1, pc1.shape[1] // fx["inter_transport_rows"].shape[1])]
        fx.assert_close("inter_transport_rows", rows[:, : fx["inter_transport_rows"].shape[1]], atol=1e-8)


def test_scoop_parity_small_epsilon(scoop_case):
    """The trained-model regime (eps near 0.03), where the official ``+1e-8`` terms show."""
    fx, net, pc1, pc2, f1, f2, _, _ = scoop_case
    eps = torch.exp(torch.from_numpy(fx["input_smalleps_epsilon_param"].astype(np.float32))) + 0.03
    gamma = net.transport_gamma()
    np.testing.assert_allclose(eps.numpy(), fx["expected_smalleps_epsilon"], rtol=1e-6)
    np.testing.assert_allclose((gamma / (gamma + eps)).detach().numpy(), fx["expected_smalleps_power"], rtol=1e-6)
    with torch.no_grad():
        corr = soft_correspondences(pc1, pc2, f1, f2, eps, gamma, iters=1, top_k=64)
    _check_call(fx, corr, "expected_smalleps_", "expected_smalleps_topk_boundary_gap", 1e-4)


def test_scoop_parity_training_loss_and_gradients(scoop_case):
    fx, net, pc1, pc2, _, _, _, _ = scoop_case
    net.zero_grad(set_to_none=True)
    f1, _ = net(pc1)
    f2, _ = net(pc2)
    corr = soft_correspondences(pc1, pc2, f1, f2, net.transport_eps(), net.transport_gamma(), iters=1, top_k=64)
    terms = training_loss(corr, pc2, knn_graph(pc1[0], 31)[None], conf_weight=0.1, smooth_weight=10.0)
    for got, name in zip(terms, ("", "_recon", "_conf", "_smooth")):
        np.testing.assert_allclose(float(got.detach()), float(fx["expected_train_loss" + name]), rtol=1e-5, err_msg=name)
    terms[0].backward()
    want = fx["expected_train_grad"]
    got = torch.cat([p.grad.reshape(-1) for p in net.parameters()]).numpy()
    assert got.shape == want.shape
    assert np.linalg.norm(got - want) <= 1e-3 * np.linalg.norm(want)
    offset = 0
    for entry in fx.entries:  # state-dict order = parameter order (gamma, epsilon, feat_conv1.fc1.weight, ...)
        size = int(np.prod(entry["shape"]))
        g, w = got[offset:offset + size], want[offset:offset + size]
        assert np.linalg.norm(g - w) <= 5e-3 * np.linalg.norm(w), entry["key"]
        offset += size
    net.zero_grad(set_to_none=True)


def test_scoop_parity_refinement(scoop_case):
    """Fed the stored F0 and confidence (SPEC: the L1 smoothness makes the steps sign-sensitive)."""
    fx, _, pc1, pc2, _, _, _, _ = scoop_case
    x, y = pc1[0], pc2[0]
    flow0 = fx.tensor("expected_flow_init")[0]
    conf = fx.tensor("expected_confidence")[0]
    graph = knn_graph(x, 31)
    n = x.shape[0]
    with_self = np.concatenate([np.arange(n)[:, None], graph.numpy()], 1)
    np.testing.assert_array_equal(_sets(with_self), _sets(fx["expected_refine_graph_idx"][0]))
    steps = fx["expected_refine_flow"].shape[0]
    for k in range(1, steps + 1):
        flow, residual, log = refine_flow(x, y, flow0, conf, StopCriteria(max_iters=k, min_delta=0, patience=0),
                                          lr=0.05, smooth_neighbors=31, smooth_weight=1.0, backward_weight=0.0)
        assert np.abs(flow.numpy() - fx["expected_refine_flow"][k - 1, 0]).max() <= 1e-5, k
        assert np.abs(residual.grad.numpy() - fx["expected_refine_grad"][k - 1, 0]).max() <= 1e-8, k
        np.testing.assert_allclose(log.loss_trace, fx["expected_refine_loss"][:k], rtol=1e-6)
    # the loss terms at the flows the official run saw (F0, then the stored iterates)
    flows = [flow0] + [torch.from_numpy(fx["expected_refine_flow"][i, 0]) for i in range(steps - 1)]
    for s, f in enumerate(flows):
        loss, recon, smooth = refinement_loss(x, y, f, conf, graph, backward_weight=0.0, smooth_weight=1.0)
        np.testing.assert_allclose([float(loss), float(recon), float(smooth)],
                                   [fx["expected_refine_loss"][s], fx["expected_refine_loss_recon"][s],
                                    fx["expected_refine_loss_smooth"][s]], rtol=1e-6)
