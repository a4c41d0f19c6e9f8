"""k-reciprocal re-ranking against a plain dense reference written in the original method's loop style.

`re_rank_reference` (dense numpy, one image at a time) is also what benchmarks/rerank_speed.py times.
"""
import numpy as np
import pytest
import torch

from reidlab.evaluate import compute_distance, evaluate_ranking
from reidlab.rerank import re_rank


def re_rank_reference(qf, gf, k1=20, k2=6, lambda_=0.3):
    """Re-ranked (Q, G) distances, dense over all N = Q + G images, image by image."""
    x = np.concatenate([qf, gf])
    num_q, n = len(qf), len(x)
    sq = (x ** 2).sum(1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)  # (N, N) squared Euclidean
    dist = dist / dist.max(axis=1, keepdims=True)  # each row scaled by its largest distance
    rank = np.argsort(dist, axis=1, kind="stable")  # (N, N) every image's neighbours, nearest first

    def reciprocal(i, k):  # R(i, k): the k + 1 nearest of i that also hold i among their k + 1 nearest
        return np.array([j for j in rank[i, :k + 1] if i in rank[j, :k + 1]], dtype=np.int64)

    v = np.zeros((n, n), dtype=x.dtype)
    half = int(np.around(k1 / 2))
    for i in range(n):
        r_i = reciprocal(i, k1)
        expansion = r_i
        for c in r_i:
            r_c = reciprocal(c, half)
            if len(np.intersect1d(r_c, r_i)) > 2.0 / 3 * len(r_c):
                expansion = np.append(expansion, r_c)
        expansion = np.unique(expansion)
        weight = np.exp(-dist[i, expansion])
        v[i, expansion] = weight / weight.sum()
    if k2 != 1:  # local query expansion: average the k2 nearest rows
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])

    holders = [np.flatnonzero(v[:, col]) for col in range(n)]  # inverted index: rows weighing each column
    jaccard = np.ones((num_q, n), dtype=x.dtype)
    for i in range(num_q):
        shared = np.zeros(n, dtype=x.dtype)  # sum_k min(V[i, k], V[j, k]) for every j
        for col in np.flatnonzero(v[i]):
            others = holders[col]
            shared[others] += np.minimum(v[i, col], v[others, col])
        jaccard[i] = 1 - shared / (2 - shared)
    final = (1 - lambda_) * jaccard + lambda_ * dist[:num_q]
    return final[:, num_q:]


def identity_features(num_ids=12, per_id=6, num_q=20, dim=16, noise=0.6, seed=0, dtype=np.float64):
    """(qf, gf, q_pids, g_pids, q_camids, g_camids): L2-normalised clusters, one camera per shot."""
    rng = np.random.default_rng(seed)
    pids = np.repeat(np.arange(num_ids), per_id)
    camids = np.tile(np.arange(per_id), num_ids)
    x = rng.standard_normal((num_ids, dim))[pids] + noise * rng.standard_normal((len(pids), dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(dtype)
    q = rng.permutation(len(pids))[:num_q]
    g = np.setdiff1d(np.arange(len(pids)), q)
    return x[q], x[g], pids[q], pids[g], camids[q], camids[g]


@pytest.mark.parametrize("k1,k2,lambda_", [(20, 6, 0.3), (7, 3, 0.5), (5, 1, 0.0)])  # k1=5: half = 2
def test_re_rank_matches_reference(k1, k2, lambda_):
    qf, gf, *_ = identity_features(seed=k1)
    expected = re_rank_reference(qf, gf, k1, k2, lambda_)
    got = re_rank(torch.from_numpy(qf), torch.from_numpy(gf), k1, k2, lambda_)
    assert got.shape == (len(qf), len(gf)) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4, rtol=0)
    assert not np.allclose(expected, expected[:, :1])  # the reference is not degenerate


@pytest.mark.parametrize("chunk_size", [1, 5, 13])
def test_small_chunks_give_the_same(chunk_size):
    qf, gf, *_ = identity_features(seed=3)
    qf, gf = torch.from_numpy(qf), torch.from_numpy(gf)
    whole = re_rank(qf, gf, chunk_size=4096)
    torch.testing.assert_close(re_rank(qf, gf, chunk_size=chunk_size), whole, atol=1e-10, rtol=0)


def test_float32_same_map_and_reranking_helps():
    qf, gf, q_pids, g_pids, q_camids, g_camids = identity_features(num_ids=20, per_id=8, num_q=40, dim=32,
                                                                   noise=0.9, seed=5, dtype=np.float32)
    expected = re_rank_reference(qf, gf)
    got = re_rank(torch.from_numpy(qf), torch.from_numpy(gf), chunk_size=50)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4, rtol=0)
    ids = (q_pids, g_pids, q_camids, g_camids)
    reranked = evaluate_ranking(got, *ids).mAP
    assert reranked == pytest.approx(evaluate_ranking(torch.from_numpy(expected), *ids).mAP, abs=1e-4)
    plain = evaluate_ranking(compute_distance(torch.from_numpy(qf), torch.from_numpy(gf)), *ids).mAP
    assert reranked > plain  # the point of re-ranking, on clustered features


def test_tiny_sets_and_lambda_one():
    # N = 7 < k1 + 1: neighbourhoods hold every image, as slicing a short ranking does
    qf, gf, *_ = identity_features(num_ids=2, per_id=4, num_q=2, dim=4, seed=1)
    np.testing.assert_allclose(re_rank(torch.from_numpy(qf), torch.from_numpy(gf[:5])).numpy(),
                               re_rank_reference(qf, gf[:5]), atol=1e-4, rtol=0)
    # lambda = 1: the original distance, each query row scaled by its largest distance over all images
    x = np.concatenate([qf, gf])
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.testing.assert_allclose(re_rank(torch.from_numpy(qf), torch.from_numpy(gf), lambda_=1.0).numpy(),
                               (d / d.max(1, keepdims=True))[:2, 2:], atol=1e-10)


def test_re_rank_rejects_bad_input():
    qf, gf = torch.randn(3, 8), torch.randn(5, 8)
    with pytest.raises(ValueError, match="same D"):
        re_rank(qf, gf[:, :4])
    with pytest.raises(ValueError, match="lambda_"):
        re_rank(qf, gf, lambda_=1.5)
    with pytest.raises(ValueError, match="k1"):
        re_rank(qf, gf, k1=0)
