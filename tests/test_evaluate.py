"""Fast ranking metrics against a plain per-query loop; distances against torch.cdist; feature extraction.

`evaluate_reference` is the authors' kind of loop (argsort the whole matrix, then one query at a time, the
precision list built element by element); benchmarks/eval_speed.py times it against `evaluate_ranking`.
"""
import numpy as np
import pytest

from reidlab.collapse import feature_spread
import torch

from reidlab.evaluate import compute_distance, evaluate_model, evaluate_ranking, extract_features


def evaluate_reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """(cmc (max_rank,), ap (Q,) nan if invalid, inp (Q,) nan if invalid, ranked (Q, G)) by a per-query loop."""
    distmat = np.asarray(distmat, dtype=np.float32)
    ranked = np.argsort(distmat, axis=1, kind="stable")  # ties: lower gallery index first
    matches = g_pids[ranked] == q_pids[:, None]  # (Q, G)
    num_q = len(q_pids)
    ap, inp = np.full(num_q, np.nan), np.full(num_q, np.nan)
    cmc_sum, num_valid = np.zeros(max_rank), 0
    for q in range(num_q):
        order = ranked[q]
        # drop the query's identity seen by the query's own camera
        keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        hits = matches[q][keep].astype(np.int64)
        if not hits.any():
            continue
        num_valid += 1
        cmc = hits.cumsum()
        cmc[cmc > 1] = 1
        cmc = np.pad(cmc, (0, max(0, max_rank - len(cmc))), mode="edge")
        cmc_sum += cmc[:max_rank]
        cum_hits = hits.cumsum()
        precision = [cum_hits[i] / (i + 1.0) for i in range(len(hits))]  # precision at every rank
        ap[q] = (np.asarray(precision) * hits).sum() / hits.sum()
        last = np.flatnonzero(hits)[-1]
        inp[q] = hits.sum() / (last + 1.0)
    return cmc_sum / num_valid, ap, inp, ranked


def random_case(num_q, num_g, num_ids, num_cams, levels=None, seed=0):
    """Distances with identity structure; `levels` quantises them so that ties are common."""
    rng = np.random.default_rng(seed)
    g_pids = rng.integers(0, num_ids, num_g)
    g_camids = rng.integers(0, num_cams, num_g)
    q_pids = rng.integers(1, num_ids, num_q)
    q_camids = rng.integers(0, num_cams, num_q)
    dist = rng.random((num_q, num_g)) + 0.7 * (q_pids[:, None] != g_pids[None, :])
    if levels:
        dist = np.round(dist * levels) / levels
    return dist.astype(np.float32), q_pids, g_pids, q_camids, g_camids


def check_against_reference(dist, q_pids, g_pids, q_camids, g_camids, max_rank, chunk_size=None):
    fast = evaluate_ranking(torch.from_numpy(dist), q_pids, g_pids, q_camids, g_camids, max_rank=max_rank,
                            keep=dist.shape[1], chunk_size=chunk_size)
    cmc, ap, inp, ranked = evaluate_reference(dist, q_pids, g_pids, q_camids, g_camids, max_rank)
    valid = ~np.isnan(ap)
    np.testing.assert_array_equal(fast.valid, valid)
    np.testing.assert_allclose(fast.cmc, cmc, atol=1e-6, rtol=0)
    np.testing.assert_allclose(fast.ap[valid], ap[valid], atol=1e-6, rtol=0)
    assert np.isnan(fast.ap[~valid]).all()
    assert fast.mAP == pytest.approx(ap[valid].mean(), abs=1e-6)
    assert fast.mINP == pytest.approx(inp[valid].mean(), abs=1e-6)
    np.testing.assert_array_equal(fast.ranked, ranked)
    return fast


@pytest.mark.parametrize("levels", [None, 8])  # 8 levels: most distances tie with many others
@pytest.mark.parametrize("chunk_size", [None, 7])  # 7 does not divide 61
def test_evaluate_ranking_matches_loop(levels, chunk_size):
    case = random_case(num_q=61, num_g=300, num_ids=15, num_cams=3, levels=levels, seed=1)
    fast = check_against_reference(*case, max_rank=50, chunk_size=chunk_size)
    assert 0.05 < fast.mAP < 0.95  # neither trivial nor hopeless, so the comparison means something


def test_invalid_queries_are_skipped():
    dist, q_pids, g_pids, q_camids, g_camids = random_case(num_q=20, num_g=80, num_ids=6, num_cams=2, seed=2)
    # query 0: its identity only in its own camera; query 1: an identity absent from the gallery
    q_pids[:2] = [100, 101]
    g_pids[:3], g_camids[:3] = 100, q_camids[0]
    fast = check_against_reference(dist, q_pids, g_pids, q_camids, g_camids, max_rank=10, chunk_size=3)
    assert not fast.valid[0] and not fast.valid[1] and fast.valid[2:].all()
    assert np.isnan(fast.ap[:2]).all()


def test_max_rank_beyond_gallery_and_negative_distances():
    dist, q_pids, g_pids, q_camids, g_camids = random_case(num_q=9, num_g=12, num_ids=3, num_cams=2, seed=3)
    dist[0] -= 1.0  # negative distances (a similarity turned into a distance, say) rank like any float
    dist[1, :3] = -0.0  # -0.0 ties with 0.0
    dist[1, 3:6] = 0.0
    check_against_reference(dist, q_pids, g_pids, q_camids, g_camids, max_rank=20)


def test_toy_example_worked_by_hand():
    # Gallery (index: pid, camera): 0: (1, 0)  1: (1, 1)  2: (2, 1)  3: (2, 0)  4: (3, 1)  5: (1, 1)
    # q0 = pid 1, cam 0: distances rank the gallery 0, 2, 1, 4, 5, 3. Item 0 is pid 1 seen by cam 0: dropped.
    #    Filtered list 2, 1, 4, 5, 3 -> hits at ranks 2 and 4. AP = (1/2 + 2/4) / 2 = 0.5; INP = 2/4 = 0.5.
    # q1 = pid 2, cam 0: ranking 3, 2, 0, 1, 4, 5. Item 3 (pid 2, cam 0) dropped; filtered 2, 0, 1, 4, 5:
    #    hit at rank 1. AP = 1; INP = 1/1 = 1.
    # q2 = pid 3, cam 0: ranking 5, 1 and 4 tie (1.0 and 1.0: the stable order puts 1 first), then 0, 2, 3.
    #    Nothing dropped (item 4 is cam 1). Hit at rank 3. AP = 1/3; INP = 1/3.
    # CMC: first hits at ranks 2, 1, 3 -> rank1 = 1/3, rank2 = 2/3, rank3 = 1.
    g_pids, g_camids = np.array([1, 1, 2, 2, 3, 1]), np.array([0, 1, 1, 0, 1, 1])
    q_pids, q_camids = np.array([1, 2, 3]), np.array([0, 0, 0])
    dist = torch.tensor([[0.0, 0.3, 0.2, 0.9, 0.4, 0.5],
                         [0.3, 0.4, 0.2, 0.1, 0.5, 0.6],
                         [1.2, 1.0, 1.3, 1.4, 1.0, 0.5]])
    result = evaluate_ranking(dist, q_pids, g_pids, q_camids, g_camids, max_rank=4, keep=3)
    np.testing.assert_allclose(result.ap, [0.5, 1.0, 1 / 3])
    np.testing.assert_allclose(result.cmc, [1 / 3, 2 / 3, 1.0, 1.0])
    assert result.mAP == pytest.approx((0.5 + 1 + 1 / 3) / 3)
    assert result.mINP == pytest.approx((0.5 + 1 + 1 / 3) / 3)
    np.testing.assert_array_equal(result.ranked, [[0, 2, 1], [3, 2, 0], [5, 1, 4]])
    metrics = result.metrics()
    assert set(metrics) == {"rank1", "mAP", "mINP"}  # rank5 / rank10 lie beyond max_rank=4
    assert metrics["rank1"] == pytest.approx(100 / 3)


def test_evaluate_ranking_rejects_bad_input():
    dist, q_pids, g_pids, q_camids, g_camids = random_case(num_q=4, num_g=10, num_ids=3, num_cams=2)
    with pytest.raises(ValueError, match="q_pids"):
        evaluate_ranking(torch.from_numpy(dist), q_pids[:3], g_pids, q_camids, g_camids)
    with pytest.raises(ValueError, match="no query has a correct match"):
        evaluate_ranking(torch.from_numpy(dist), q_pids + 100, g_pids, q_camids, g_camids)
    dist[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate_ranking(torch.from_numpy(dist), q_pids, g_pids, q_camids, g_camids)


@pytest.mark.parametrize("normalize", [True, False])
def test_compute_distance_matches_cdist(normalize):
    torch.manual_seed(0)
    qf, gf = torch.randn(37, 24) * 3, torch.randn(53, 24) * 3
    q, g = (torch.nn.functional.normalize(qf, dim=1), torch.nn.functional.normalize(gf, dim=1)) if normalize \
        else (qf, gf)
    expected = torch.cdist(q.double(), g.double()).pow(2).float()
    got = compute_distance(qf, gf, "euclidean", normalize=normalize, chunk_size=10)
    torch.testing.assert_close(got, expected, atol=1e-4 * expected.max().item(), rtol=1e-4)
    cos = torch.nn.functional.cosine_similarity(qf[:, None].double(), gf[None].double(), dim=2)
    torch.testing.assert_close(compute_distance(qf, gf, "cosine", normalize=normalize), (1 - cos).float(),
                               atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="metric"):
        compute_distance(qf, gf, "manhattan")


class TinyReid(torch.nn.Module):
    """A stand-in with the ReidModel interface: model(x) is the test feature, extract(x) a dict."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d((2, 1)),
                                        torch.nn.Flatten(), torch.nn.Dropout(0.5))  # (B, 16)
        self.bn = torch.nn.BatchNorm1d(16)
        self.bn.running_mean.uniform_(-1, 1)

    def extract(self, x):
        f_t = self.body(x)
        return {"f_t": f_t, "f_i": self.bn(f_t)}

    def forward(self, x):
        return self.extract(x)["f_i"]


def make_loader(n=10, batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 8, 6, generator=g)  # (N, 3, H, W), asymmetric so a flip changes features
    pids, camids = torch.arange(n) % 3, torch.arange(n) % 2
    return [(images[i:i + batch], pids[i:i + batch], camids[i:i + batch]) for i in range(0, n, batch)], images


def test_extract_features_eval_mode_flip_and_feature():
    model, (loader, images) = TinyReid(), make_loader()
    model.train()
    feats, pids, camids = extract_features(model, loader, progress=False)
    assert model.training  # put back in the mode it was in
    model.eval()
    with torch.no_grad():
        plain = model(images)
        flipped = model(images.flip(3))
        f_t = model.extract(images)["f_t"]
    assert feats.dtype == torch.float32 and feats.shape == (10, 16)
    torch.testing.assert_close(feats, plain)  # eval mode: no dropout, BN running statistics
    np.testing.assert_array_equal(pids, np.arange(10) % 3)
    np.testing.assert_array_equal(camids, np.arange(10) % 2)
    assert not torch.allclose(plain, flipped)
    torch.testing.assert_close(extract_features(model, loader, flip=True, progress=False)[0], plain + flipped)
    torch.testing.assert_close(extract_features(model, loader, feature="f_t", progress=False)[0], f_t)
    bf16 = extract_features(model, loader, amp="bf16", progress=False)[0]
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, plain, atol=0.1, rtol=0.05)
    with pytest.raises(ValueError, match="feature"):
        extract_features(model, loader, feature="f", progress=False)
    with pytest.raises(ValueError, match="no batches"):
        extract_features(model, [], progress=False)


class CountingLoader:
    def __init__(self, batches):
        self.batches, self.passes = batches, 0

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        self.passes += 1
        return iter(self.batches)


def test_extract_features_starts_one_pass():
    """tqdm.auto calls iter() on what it wraps: given a DataLoader with workers, a second pass nobody reads
    forked its workers, whose copies in the next loader's workers then printed 'Exception ignored' (issue 13)."""
    model, (batches, _) = TinyReid(), make_loader()
    loader = CountingLoader(batches)
    expected = extract_features(model, loader, progress=False)[0]
    assert loader.passes == 1
    from_generator = extract_features(model, (b for b in batches), progress=False)[0]  # no length
    torch.testing.assert_close(from_generator, expected)


def test_evaluate_model_plain_and_reranked():
    from reidlab.config import Config

    model, (loader, _) = TinyReid(), make_loader(n=24, batch=5)
    cfg = Config(flip_test=True, rerank=True, rerank_k1=4, rerank_k2=2, progress=False)
    metrics, result = evaluate_model(model, loader, loader, cfg, "cpu")
    feats, pids, camids = extract_features(model, loader, flip=True, progress=False)
    plain = evaluate_ranking(compute_distance(feats, feats), pids, pids, camids, camids)
    assert metrics["mAP"] == pytest.approx(plain.metrics()["mAP"])
    np.testing.assert_array_equal(result.ranked, plain.ranked)
    assert {"rank1", "rank5", "rank10", "mAP", "mINP", "rerank_rank1", "rerank_mAP", "rerank_mINP",
            "feature_spread"} == set(metrics)
    assert all(0 <= v <= 100 for v in metrics.values())
    assert metrics["feature_spread"] == pytest.approx(feature_spread(feats))  # collapse's sign, on these features
