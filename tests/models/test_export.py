"""ONNX export (``motionflow export`` / ``export_onnx``) and the ONNX Runtime backend, against the parity fixtures.

Each network is exported once per session with the recipe weights of ``../shared/parity/<model>.npz`` (salt,
frame size and iterations read from the file; every checksum verified first), RAFT through the CLI, with 2 of
the fixture's iterations (:func:`_iters`). ONNX Runtime then runs the fixture inputs and its flows are compared
with the fixture's expected flows of that iteration (the official code's outputs). Measured max |ORT - expected|
on the public fixtures (CPU, float32) after 2 / all 4 iterations: RAFT 2.9e-6 / 6.2e-6 px, BOF 7.3e-6 / 9.3e-6,
StreamFlow 1.3e-5 / 1.9e-5, MOF 1.7e-4 / 3.0e-4 px (mean 2.8e-6 / 4.9e-6); torch itself is at 2.8e-4 px on MOF
after 4 (its x100 mask logits amplify float32 reordering: 1 vs 2 threads move the official output by 3.3e-4 px,
SPEC section 3), so MOF is held to 5e-4 px max and 1e-5 px mean, the others to the issue's 1e-4 px.
``pytest --junitxml=J.xml -o junit_family=xunit1`` records the measured values per test.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'motionflow[onnx]')")
pytest.importorskip("onnxscript", reason="onnxscript not installed (pip install 'motionflow[onnx]')")

from motionflow.cli.main import main  # noqa: E402
from motionflow.errors import CheckpointError, FormatError, MissingDependencyError, ShapeError, UnknownNameError  # noqa: E402
from motionflow.inference import estimate_flow  # noqa: E402
from motionflow.models import export_onnx  # noqa: E402
from motionflow.models.onnx_runtime import open_session, read_info  # noqa: E402

ATOL = 1e-4  # issue 20: max |ORT - official| in px
MOF_ATOL, MOF_MEAN_ATOL = 5e-4, 1e-5  # see the module docstring

FIXTURES = {"raft": "raft", "videoflow-bof": "videoflow_bof", "videoflow-mof": "videoflow_mof", "streamflow": "streamflow"}


def _inputs(fx, name: str) -> np.ndarray:
    """The fixture frames as the export's ``frames`` (B, T, 3, H, W)."""
    if name == "raft":
        return np.stack([fx["input_image1"], fx["input_image2"]], axis=1)
    if name == "streamflow":
        return np.ascontiguousarray(fx["input_images"].transpose(1, 0, 2, 3, 4))
    return fx["input_images"]


def _iters(fx) -> int:
    """Iterations the tests export: 2 of the fixture's (4 in the public files). Iteration k of the official
    loop does not depend on the total count, so ``expected_flow_predictions[k - 1]`` is its expected output;
    two unrolled iterations still carry the flow and hidden state from one to the next, and cost 0.7x the
    export time of four (BOF: 28 vs 41 CPU s). Iteration 2 differs from the final flows by 4.8-24 px."""
    return min(2, fx["expected_flow_predictions"].shape[0])


def _expected(fx, name: str) -> dict:
    """The fixture's flows after :func:`_iters` iterations in the export's output layout (``flow`` / ``backward``)."""
    final = fx["expected_flow_predictions"][_iters(fx) - 1]  # same layout as expected_flow_final / _up
    if name == "raft":
        return {"flow": final[:, None]}
    if name == "streamflow":
        return {"flow": final.transpose(1, 0, 2, 3, 4)}
    if name == "videoflow-bof":  # axis 1: 0 = centre -> next (pair 1), 1 = centre -> previous (pair 0)
        return {"flow": final[:, :1], "backward": final[:, 1:]}
    t = final.shape[1] // 2  # MOF: forward flows of the inner frames, then their backward flows
    return {"flow": final[:, :t], "backward": final[:, t:]}


@pytest.fixture(scope="session")
def exported(parity_fixture, tmp_path_factory):
    """``exported(name) -> (fixture, onnx path, checkpoint path)``, each network exported once."""
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            fx = parity_fixture(FIXTURES[name])
            folder = tmp_path_factory.mktemp(f"onnx_{FIXTURES[name]}")
            ckpt = fx.checkpoint_file(folder)  # recipe weights, every checksum verified first
            iters = _iters(fx)
            h, w = _inputs(fx, name).shape[-2:]
            out = folder / f"{name}.onnx"
            if name == "raft":  # through the CLI, with dynamic height and width (and the ORT vs torch check)
                code = main(["export", "--model", name, "--checkpoint", str(ckpt), "--size", f"{h}x{w}",
                             "--iters", str(iters), "--dynamic-size", "--out", str(out)])
                assert code == 0
            else:  # the fixture comparison below replaces the exporter's own check (test time)
                report = export_onnx(name, ckpt, (h, w), out, iters=iters, verify=False)
                assert report.outputs == (["flow"] if name == "streamflow" else ["flow", "backward"])
            cache[name] = (fx, out, ckpt)
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(FIXTURES))
def test_export_parity(exported, name, request):
    fx, path, _ = exported(name)
    session = open_session(path, device="cpu")
    frames = _inputs(fx, name)
    want = _expected(fx, name)
    assert [o.name for o in session.get_outputs()] == list(want)
    got = dict(zip(want, session.run(None, {"frames": frames})))
    for key, ref in want.items():
        assert got[key].shape == ref.shape, f"{name} {key}: shape {got[key].shape}, expected {ref.shape}"
        d = np.abs(got[key].astype(np.float64) - ref)
        # the README's figures: pytest --junitxml=J.xml -o junit_family=xunit1 writes them
        request.node.user_properties += [(f"{key}_max_abs_diff_px", f"{d.max():.3g}"),
                                         (f"{key}_mean_abs_diff_px", f"{d.mean():.3g}")]
        if name == "videoflow-mof":
            assert d.max() <= MOF_ATOL and d.mean() <= MOF_MEAN_ATOL, f"{key}: max {d.max():.3g} mean {d.mean():.3g}"
        else:
            assert d.max() <= ATOL, f"{name} {key}: max |ORT - official| {d.max():.3g} px"


def test_export_metadata_and_dynamic_batch(exported):
    fx, path, _ = exported("videoflow-bof")
    session = open_session(path, device="cpu")
    info = read_info(session, path)
    h, w = _inputs(fx, "videoflow-bof").shape[-2:]
    assert (info.model, info.window, info.iters) == ("videoflow-bof", 3, _iters(fx))
    assert (info.forward_pairs, info.backward_pairs, info.size, info.dynamic) == ((1,), (0,), (h, w), ("batch",))
    one = _inputs(fx, "videoflow-bof")
    two = np.concatenate([one[:, ::-1], one], axis=0).copy()  # batch 2: the reversed window, then the fixture's
    flow2, back2 = session.run(None, {"frames": two})
    flow1, back1 = session.run(None, {"frames": one})
    assert np.abs(flow2[1:] - flow1).max() <= 1e-4 and np.abs(back2[1:] - back1).max() <= 1e-4
    # reversing the window swaps the centre's neighbours: the other sample must not be a copy
    assert np.abs(flow2[:1] - flow1).max() > 0.1


def test_estimate_flow_onnxruntime_equals_torch(exported):
    """The video engine through the ORT method: padding ((H-5)x(W-3) -> HxW), windows and stitching."""
    fx, path, ckpt = exported("videoflow-bof")
    iters = _iters(fx)
    h, w = fx["input_images"].shape[-2:]
    frames = torch.from_numpy(fx["input_images"][0, :, :, 2 : h - 3, 1 : w - 2].copy())
    frames = torch.cat([frames, frames[1:2].flip(-1)])  # 4 frames: 4 BOF windows, clip edges repeated
    ref = estimate_flow(frames, "videoflow-bof", checkpoint=ckpt, iters=iters, device="cpu")
    got = estimate_flow(frames, "videoflow-bof", backend="onnxruntime", onnx=path)
    assert got.flow.shape == ref.flow.shape == (3, 2, h - 5, w - 3)
    assert got.backward.shape == ref.backward.shape
    assert (got.flow - ref.flow).abs().max() <= 1e-4
    assert (got.backward - ref.backward).abs().max() <= 1e-4
    assert (got.flow - got.backward).abs().max() > 0.1  # the backward slot is not the forward one


def test_export_dynamic_size_equals_torch(exported, capsys):
    """RAFT exported with --dynamic-size runs other sizes and batches; ORT equals the torch network there."""
    from motionflow.models import create_model

    fx, path, ckpt = exported("raft")
    session = open_session(path, device="cpu")
    assert read_info(session, path).dynamic == ("batch", "height", "width")
    model = create_model("raft", checkpoint=ckpt)
    iters = _iters(fx)
    pair = torch.from_numpy(_inputs(fx, "raft"))
    h, w = pair.shape[-2:]
    for frames in (pair[..., : max(128, h - 8), : max(128, w - 16)], torch.cat([pair, pair.flip(1)])[..., :128, :128]):
        frames = frames.contiguous()
        (got,) = session.run(None, {"frames": frames.numpy()})
        with torch.no_grad():
            want = model(frames[:, 0], frames[:, 1], iters=iters, test_mode=True)[1][:, None]
        assert got.shape == tuple(want.shape)
        assert np.abs(got - want.numpy()).max() <= 1e-4


def test_onnx_method_fixed_size_padding_and_refusals(exported):
    from motionflow.registry import get_optical_flow_method

    fx, path, ckpt = exported("videoflow-bof")  # a fixed size: the fixture's H x W
    h, w = fx["input_images"].shape[-2:]
    iters = _iters(fx)
    method = get_optical_flow_method("videoflow-bof", backend="onnxruntime", onnx=path)
    assert method.padding(h - 5, w - 3) == (1, 2, 2, 3)  # the torch method's padding, to h x w
    assert method.padding(h - 16, w - 8) == (4, 4, 8, 8)  # smaller: up to the exported h x w
    with pytest.raises(ShapeError, match=rf"frames of {h + 1}x{w} run at {h + 8}x{w}, larger than the exported {h}x{w}"):
        method(torch.zeros(1, 3, 3, h + 1, w))
    assert method.describe()["backend"] == "onnxruntime" and len(method.describe()["onnx_sha256"]) == 64
    with pytest.raises(CheckpointError, match="expected an ONNX export of raft, found one of videoflow-bof"):
        get_optical_flow_method("raft", backend="onnxruntime", onnx=path)
    with pytest.raises(CheckpointError, match=f"exported with {iters} iterations, found iters={iters + 1}"):
        get_optical_flow_method("videoflow-bof", backend="onnxruntime", onnx=path, iters=iters + 1)
    with pytest.raises(CheckpointError, match="takes its weights from"):
        get_optical_flow_method("videoflow-bof", backend="onnxruntime", onnx=path, checkpoint=ckpt)
    with pytest.raises(CheckpointError, match="needs onnx=PATH"):
        get_optical_flow_method("videoflow-bof", backend="onnxruntime")
    with pytest.raises(UnknownNameError, match="needs backend='onnxruntime'"):
        get_optical_flow_method("videoflow-bof", onnx=path)
    with pytest.raises(UnknownNameError, match="backend must be 'torch' or 'onnxruntime', found 'tensorrt'"):
        get_optical_flow_method("videoflow-bof", backend="tensorrt", onnx=path)
    with pytest.raises(UnknownNameError, match="return_iterations apply to the torch backend only"):
        get_optical_flow_method("videoflow-bof", backend="onnxruntime", onnx=path, return_iterations=True)


def test_onnx_method_bad_files(tmp_path):
    from motionflow.registry import get_optical_flow_method

    with pytest.raises(CheckpointError, match="does not exist"):
        get_optical_flow_method("raft", backend="onnxruntime", onnx=tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(FormatError, match=r"bad.onnx: expected an ONNX model"):
        get_optical_flow_method("raft", backend="onnxruntime", onnx=bad)
    # a valid ONNX file without motionflow metadata
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["frames"], ["flow"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("frames", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("flow", TensorProto.FLOAT, [1])])
    plain = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), plain)
    with pytest.raises(FormatError, match=r"expected an ONNX file written by motionflow export \(metadata motionflow.model"):
        get_optical_flow_method("raft", backend="onnxruntime", onnx=plain)


def test_export_argument_errors(tmp_path, capsys):
    with pytest.raises(UnknownNameError, match="unknown network 'flownet'"):
        export_onnx("flownet", None, (128, 128), tmp_path / "x.onnx", weights="random")
    with pytest.raises(ShapeError, match=r"size: expected a positive height and width, found 0x128"):
        export_onnx("raft", None, (0, 128), tmp_path / "x.onnx", weights="random")
    with pytest.raises(ShapeError, match=r"opset: expected >= 16 \(GridSample\), found 15"):
        export_onnx("raft", None, (128, 128), tmp_path / "x.onnx", opset=15, weights="random")
    with pytest.raises(CheckpointError, match="raft"):
        export_onnx("raft", None, (128, 128), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(SystemExit) as exc:
        main(["export", "--model", "raft", "--checkpoint", "x.pth", "--size", "128", "--out", "x.onnx"])
    assert exc.value.code == 2 and "expected HxW in pixels, e.g. 436x1024, found '128'" in capsys.readouterr().err
    assert main(["export", "--model", "flownet", "--checkpoint", "x.pth", "--size", "128x128", "--out", "x.onnx"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "motionflow export: error: model: unknown network 'flownet'; valid choices: raft, streamflow, "
        "videoflow-bof, videoflow-mof"
    ]
    assert main(["export", "--model", "raft", "--checkpoint", str(tmp_path / "none.pth"), "--size", "128x128",
                 "--out", str(tmp_path / "x.onnx")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_missing_onnxruntime_raises_missing_dependency(monkeypatch, tmp_path):
    from motionflow.models.method import NetworkSpec, pairwise_windows
    from motionflow.models.onnx_runtime import OnnxFlowMethod

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    spec = NetworkSpec("raft", 2, pairwise_windows, None, 4)
    with pytest.raises(MissingDependencyError, match=r"pip install onnxruntime"):
        OnnxFlowMethod(spec, tmp_path / "x.onnx")
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(MissingDependencyError, match=r"pip install onnxscript"):
        export_onnx("raft", None, (128, 128), tmp_path / "x.onnx", weights="random")


def test_package_imports_without_the_onnx_extra():
    code = (
        "import sys\n"
        "for m in ('onnx', 'onnxruntime', 'onnxscript'): sys.modules[m] = None\n"
        "import motionflow, motionflow.models, motionflow.models.export, motionflow.models.onnx_runtime\n"
        "from motionflow.cli.main import build_parser\n"
        "build_parser().parse_args(['export', '--model', 'raft', '--checkpoint', 'c', '--size', '8x8', '--out', 'o'])\n"
        "from motionflow.models import export_onnx, OnnxFlowMethod\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_cli_estimate_onnxruntime(exported, tmp_path, capsys):
    """``motionflow estimate --backend onnxruntime --onnx FILE`` (network read from the file) equals torch."""
    from motionflow.io.flo import read_flo
    from motionflow.io.image import write_image

    fx, path, ckpt = exported("raft")
    images = [fx["input_image1"][0], fx["input_image2"][0], fx["input_image1"][0, :, ::-1, :]]
    h, w = images[0].shape[-2:]
    images = [np.ascontiguousarray(im[:, 2 : h - 3, 1 : w - 2]) for im in images]
    files = []
    for i, img in enumerate(images):
        files.append(tmp_path / f"frame_{i:04d}.png")
        write_image(files[-1], np.ascontiguousarray(img.transpose(1, 2, 0)).astype(np.uint8))
    out = tmp_path / "flows"
    assert main(["estimate", *map(str, files), "--out", str(out), "--backend", "onnxruntime", "--onnx", str(path),
                 "--quiet"]) == 0
    assert "2 flows written" in capsys.readouterr().out
    frames = torch.from_numpy(np.stack(images))
    ref = estimate_flow(frames, "raft", checkpoint=ckpt, iters=_iters(fx), device="cpu")
    for i in range(2):
        flow, _ = read_flo(out / f"frame_{i:04d}.flo")
        assert flow.shape == (h - 5, w - 3, 2)
        assert np.abs(flow - ref.flow[i].permute(1, 2, 0).numpy()).max() <= 1e-4
    # resume: the same file resumes (nothing recomputed); another .onnx of the same network is another run
    run = ["estimate", *map(str, files), "--out", str(out), "--backend", "onnxruntime", "--quiet"]
    assert main([*run, "--onnx", str(path)]) == 0
    assert "0 flows written, 2 already there" in capsys.readouterr().out
    other = _with_metadata(path, tmp_path / "other.onnx", version="0")  # same network, another file
    assert main([*run, "--onnx", str(other)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected a resume of the same run" in err[0] and "method.onnx_sha256" in err[0], err
    # usage errors (exit 2) and wrong files (exit 1): one line each
    not_onnx = tmp_path / "frame.onnx"
    not_onnx.write_bytes(b"\x89PNG not a model")
    two_frames = _with_metadata(path, tmp_path / "window3.onnx", window="3")
    bad = [
        (["--backend", "onnxruntime"], 2, "needs --onnx MODEL.onnx"),
        (["--onnx", str(path)], 2, "needs --backend onnxruntime"),
        (["--method", "classical", "--backend", "onnxruntime", "--onnx", str(path)], 2, "runs an exported network"),
        (["--backend", "onnxruntime", "--onnx", str(tmp_path / "missing.onnx")], 1, "missing.onnx' does not exist"),
        (["--backend", "onnxruntime", "--onnx", str(not_onnx)], 1, "frame.onnx: expected an ONNX model"),
        (["--method", "videoflow-bof", "--backend", "onnxruntime", "--onnx", str(path)], 1,
         "expected an ONNX export of videoflow-bof, found one of raft"),
        (["--backend", "onnxruntime", "--onnx", str(two_frames)], 1,
         "expected an export of raft's 2-frame window, found one of 3 frames (metadata) with input frames"),
    ]
    for extra, code, want in bad:
        assert main(["estimate", *map(str, files), "--out", str(tmp_path / "x"), "--quiet", *extra]) == code, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and want in err[0], err


def _with_metadata(src, dst, **meta):
    """A copy of the export ``src`` at ``dst`` with ``motionflow.<key>`` metadata replaced by ``meta``."""
    import onnx

    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    props.update({f"motionflow.{k}": v for k, v in meta.items()})
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(dst))
    return dst
