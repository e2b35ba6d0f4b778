"""SFNet: shapes, gradients, loss, store/fetch budget, fetch selection, ablations."""

from __future__ import annotations

import pytest
import torch

import stvsr
from stvsr.errors import StvsrError
from stvsr.infer import optimize
from stvsr.models.sfnet import (
    SFNet,
    init_from_basicvsr,
    local_window_read,
    select_fetch_indices,
)
from stvsr.train.losses import charbonnier, spacetime_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**kw) -> SFNet:
    args = dict(num_feat=16, num_fe=1, num_ds=1, num_rec=1, fetch_frames=2)
    args.update(kw)
    return SFNet(**args).eval()


@pytest.mark.parametrize("name,n,size", [("sfnet-lite", 4, 16), ("sfnet", 3, 8)])
def test_presets_forward_backward_reach_every_parameter(name: str, n: int, size: int) -> None:
    torch.manual_seed(0)
    model = stvsr.create_model(name).train()
    assert (model.kind, model.scale, model.num_frames) == ("spacetime", 4, 0)
    x = torch.rand(1, n, 3, size, size)
    out, structure = model(x, return_structure=True)
    assert out.shape == structure.shape == (1, 2 * n - 1, 3, 4 * size, 4 * size)
    gt = torch.rand_like(out)
    loss = spacetime_loss(out, structure, gt, model.lambda_s)
    loss.backward()
    bad = [k for k, p in model.named_parameters() if p.grad is None or not p.grad.abs().gt(0).any()]
    assert bad == []
    # DF was exercised: some step fetched distant entries
    assert any(r["fetched"] for r in model.debug["frm"])


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("n", [2, 3, 8])
def test_output_shapes(n: int, scale: int) -> None:
    torch.manual_seed(0)
    model = tiny(scale=scale)
    with torch.no_grad():
        out = model(torch.rand(2, n, 3, 7, 9))  # odd sizes: padded and cropped back
    assert out.shape == (2, 2 * n - 1, 3, 7 * scale, 9 * scale)
    assert torch.isfinite(out).all()


def test_return_structure_and_loss() -> None:
    torch.manual_seed(0)
    model = tiny()
    x = torch.rand(1, 3, 3, 8, 8)
    with torch.no_grad():
        out, s = model(x, return_structure=True)
        plain = model(x)
    assert torch.equal(out, plain)
    assert not torch.equal(out, s)  # detail branch adds something
    gt = torch.rand_like(out)
    manual = (torch.sqrt((out - gt) ** 2 + 1e-6).mean()
              + 0.25 * torch.sqrt((s - gt) ** 2 + 1e-6).mean())
    assert torch.allclose(spacetime_loss(out, s, gt), manual)
    assert torch.allclose(spacetime_loss(out, s, gt, model.lambda_s), manual)
    assert charbonnier(gt, gt).item() == pytest.approx(1e-3, rel=1e-4)


def test_in_between_step_input_uses_neighbours() -> None:
    torch.manual_seed(0)
    model = tiny(use_df=False)
    x = torch.rand(1, 3, 3, 8, 8)
    with torch.no_grad():
        a = model(x)
        x2 = x.clone()
        x2[:, 2] = torch.rand(3, 8, 8)
        b = model(x2)
    # changing the last input changes the new frame before it much more than it changes the
    # first output (which sees it only through the recurrence)
    d = (a - b).abs().flatten(2).mean(2)[0]
    assert d[3] > d[0]


def _distant_reads(model: SFNet, n: int) -> tuple[int, dict, dict]:
    """Runs ``model`` on ``n`` random frames and watches the tensors themselves: every store
    entry each direction writes, and every entry its distant fetch is handed. Returns ``K``, the
    number of entries each direction stored, and per direction ``{k: (available, read)}``: the
    entries a step could read (``(direction, index)`` of those at distance >= 2 in time, as the
    design allows) and the ones that reached its attention, identified by tensor equality."""
    kk = 2 * n - 1
    stored: dict[str, list[torch.Tensor]] = {"b": [], "f": []}
    steps: dict[str, dict[int, tuple[list, list]]] = {"b": {}, "f": {}}

    def index(d: str) -> int:  # BRM runs k = K-1 ... 0, FRM k = 0 ... K-1 (the class docs)
        return kk - 1 - len(stored[d]) if d == "b" else len(stored[d])

    def available(d: str, k: int) -> list[tuple[str, int]]:
        later = [("b", kk - 1 - i) for i in range(len(stored["b"])) if kk - 1 - i >= k + 2]
        earlier = [("f", i) for i in range(len(stored["f"])) if i <= k - 2]
        return later if d == "b" else earlier + later

    def on_store(d: str):
        def hook(module, args, out) -> None:
            steps[d].setdefault(index(d), (available(d, index(d)), []))
            stored[d].append(out[0])
        return hook

    def on_fetch(d: str):
        def hook(module, args) -> None:
            _, keys, _ = args
            k = index(d)
            read = []
            for m in range(keys.shape[1]):
                hits = [(e, (kk - 1 - i) if e == "b" else i)
                        for e in "bf" for i, t in enumerate(stored[e])
                        if torch.equal(t, keys[:, m])]
                assert len(hits) == 1, f"step {k}: fetched key {m} is not one stored entry"
                read.append(hits[0])
            steps[d][k] = (available(d, k), read)
        return hook

    hooks = [model.brm.store.register_forward_hook(on_store("b")),
             model.frm.store.register_forward_hook(on_store("f")),
             model.brm.df.register_forward_pre_hook(on_fetch("b")),
             model.frm.df.register_forward_pre_hook(on_fetch("f"))]
    try:
        with torch.no_grad():
            model(torch.rand(1, n, 3, 8, 8))
    finally:
        for h in hooks:
            h.remove()
    assert len(stored["b"]) == len(stored["f"]), "both directions store one entry per step"
    return len(stored["b"]), steps["b"], steps["f"]


@pytest.mark.parametrize("policy", ["spread", "nearest"])
def test_store_and_fetch_stay_within_budget(policy: str) -> None:
    """Each direction stores one entry per step; a step's distant fetch is handed at most
    ``fetch_frames`` entries, all at least two steps away (BRM: later steps; FRM: earlier steps
    of its own store, later ones of BRM's), exactly those the selection rule picks, and as many
    as the budget allows — however long the clip."""
    budget = 3
    for n in (5, 10):
        torch.manual_seed(0)
        model = tiny(fetch_frames=budget, store_policy=policy)
        kk = 2 * n - 1
        stored, brm, frm = _distant_reads(model, n)
        assert stored == kk
        assert sorted(brm) == sorted(frm) == list(range(kk))  # every step stored once
        widths = []
        for steps in (brm, frm):
            for k, (avail, read) in steps.items():
                assert len(read) == len(set(read)) == min(budget, len(avail)), (k, avail, read)
                assert set(read) <= set(avail), (k, avail, read)  # >= 2 steps away, right store
                chosen = select_fetch_indices([j for _, j in avail], k, budget, policy)
                assert sorted(j for _, j in read) == chosen
                widths.append(len(read))
        assert max(widths) == budget  # the cap holds at both lengths ...
        assert max(len(a) for a, _ in frm.values()) > budget  # ... and was needed
        assert not brm[kk - 1][1] and not brm[kk - 2][1]  # nothing two steps later yet
        assert frm[0][1]  # the first FRM step reads BRM's far entries

    everything = tiny(fetch_frames=None)
    _, brm, frm = _distant_reads(everything, 6)
    for steps in (brm, frm):
        for k, (avail, read) in steps.items():
            assert sorted(read) == sorted(avail), k


def test_select_fetch_indices() -> None:
    cands = list(range(2, 15))  # BRM at k = 0, K = 15
    assert select_fetch_indices(cands, 0, 4, "nearest") == [2, 3, 4, 5]
    # spread: 2 nearest + 2 evenly over the remaining 4..14 (bin centres)
    assert select_fetch_indices(cands, 0, 4, "spread") == [2, 3, 6, 12]
    assert select_fetch_indices(cands, 0, None, "spread") == cands
    assert select_fetch_indices([9, 3], 0, 8, "nearest") == [3, 9]
    assert select_fetch_indices([], 5, 4, "spread") == []
    two_sided = [0, 1, 2, 3, 4, 5, 9, 10, 11, 12, 13, 14]  # FRM at k = 7
    assert select_fetch_indices(two_sided, 7, 2, "nearest") == [5, 9]
    near3 = select_fetch_indices(two_sided, 7, 3, "nearest")
    assert near3 == [4, 5, 9]  # ties go to the earlier index
    spread = select_fetch_indices(two_sided, 7, 6, "spread")
    assert len(spread) == 6 and {4, 5, 9} <= set(spread)
    assert min(spread) <= 1 and max(spread) >= 13  # reaches the far past and future
    with pytest.raises(StvsrError):
        select_fetch_indices(cands, 0, 0, "spread")
    with pytest.raises(StvsrError):
        select_fetch_indices(cands, 0, 2, "random")


def test_local_window_read_matches_dense_reference() -> None:
    torch.manual_seed(0)
    b, m, ck, cv, h, w, r = 2, 3, 4, 5, 6, 7, 2
    q = torch.randn(b, ck, h, w)
    keys = torch.randn(b, m, ck, h, w)
    values = torch.randn(b, m, cv, h, w)
    tau = torch.tensor(0.7)
    out = local_window_read(q, keys, values, r, tau)
    ref = torch.zeros(b, cv, h, w)
    for i in range(h):
        for j in range(w):
            ks, vs = [], []
            for di in range(-r, r + 1):
                for dj in range(-r, r + 1):
                    y, x = i + di, j + dj
                    if 0 <= y < h and 0 <= x < w:
                        ks.append(keys[:, :, :, y, x])
                        vs.append(values[:, :, :, y, x])
            kk = torch.cat(ks, dim=1)  # (B, M*W, Ck)
            vv = torch.cat(vs, dim=1)
            logits = torch.einsum("bc,bnc->bn", q[:, :, i, j], kk) / (ck ** 0.5 * tau)
            ref[:, :, i, j] = torch.einsum("bn,bnc->bc", logits.softmax(1), vv)
    assert torch.allclose(out, ref, atol=1e-5)


def test_ablation_flags_change_modules_and_outputs() -> None:
    torch.manual_seed(0)
    base = tiny(fetch_frames=2)
    names = {n for n, _ in base.named_modules()}
    assert {"brm.df", "frm.df", "brm.store", "frm.af.0", "frm.af.1"} <= names
    no_df = tiny(use_df=False)
    no_df_names = {n for n, _ in no_df.named_modules()}
    assert not any(".df" in n or ".store" in n for n in no_df_names)
    assert no_df.brm.ds_fuse.in_channels == 2 * 16 and base.brm.ds_fuse.in_channels == 3 * 16
    no_af = tiny(use_af=False)
    assert not any(".af." in n for n, _ in no_af.named_modules())
    pyr = tiny(pyramid=True)
    assert hasattr(pyr.brm.af[0], "l2_dcn")
    with torch.no_grad():
        assert pyr(torch.rand(1, 2, 3, 6, 10)).shape == (1, 3, 3, 24, 40)
    x = torch.rand(1, 6, 3, 8, 8)
    state = base.state_dict()
    with torch.no_grad():
        ref = base(x)
        outs = {}
        for key, kw in {"nearest": dict(store_policy="nearest"),
                        "fetch4": dict(fetch_frames=4),
                        "all": dict(fetch_frames=None)}.items():
            other = tiny(**kw)
            other.load_state_dict(state)  # same weights, different fetch behaviour
            outs[key] = other(x)
        same = tiny()
        same.load_state_dict(state)
        assert torch.equal(same(x), ref)
    for key, out in outs.items():
        assert not torch.allclose(out, ref), key
    with pytest.raises(StvsrError):
        tiny(store_policy="far")
    with pytest.raises(StvsrError):
        tiny(fetch_frames=0)


def test_bad_inputs_raise() -> None:
    model = tiny()
    with pytest.raises(StvsrError):
        model(torch.rand(1, 1, 3, 8, 8))
    with pytest.raises(StvsrError):
        model(torch.rand(1, 3, 8, 8))


def test_init_from_basicvsr_copies_matching_parts() -> None:
    torch.manual_seed(0)
    bvsr = stvsr.create_model("basicvsr", weights=None).state_dict()
    model = stvsr.create_model("sfnet", weights=None)
    copied = init_from_basicvsr(model, bvsr)
    own = model.state_dict()
    assert "rec_d.upconv1.weight" in copied and "brm.ds_body.0.conv1.weight" in copied
    assert torch.equal(own["rec_s.conv_last.weight"], bvsr["conv_last.weight"])
    assert torch.equal(own["frm.ds_body.9.conv2.bias"], bvsr["forward_trunk.main.2.9.conv2.bias"])
    assert torch.equal(own["fe.main.2.0.conv1.weight"],
                       bvsr["backward_trunk.main.2.10.conv1.weight"])
    assert torch.equal(own["fuse_d.weight"][:, :64], bvsr["fusion.weight"][:, 64:])
    assert "brm.af.0.dcn.weight" not in copied
    small = stvsr.create_model("sfnet-lite", weights=None)
    # 32 channels: only the 3-channel output biases fit
    assert init_from_basicvsr(small, bvsr) == ["rec_d.conv_last.bias", "rec_s.conv_last.bias"]


def test_fused_inference_path_matches_autograd_path() -> None:
    # the optimized model runs channels-last with fused oneDNN conv + activation/skip kernels;
    # the plain model with autograd on takes plain convs: both must give the same images
    torch.manual_seed(0)
    model = tiny(num_ds=2, num_rec=2)
    x = torch.rand(1, 3, 3, 10, 12)
    with torch.no_grad():
        fast, fast_s = optimize(model, "cpu", "fp32")(x, return_structure=True)
    slow, slow_s = model(x, return_structure=True)
    assert torch.allclose(fast, slow.detach(), atol=1e-5, rtol=0)
    assert torch.allclose(fast_s, slow_s.detach(), atol=1e-5, rtol=0)
    assert not torch.equal(fast, fast_s)  # the detail branch contributes
