"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding",
CVPR 2017), the last row of the paper's Table 1, vectorised in torch (CPU or GPU: the inputs' device).

Over all N = Q + G images, with d(i, j) the squared Euclidean distance divided by the largest distance of
row i (the original method's per-row scaling):
  N(i, k)    = the k + 1 nearest images of i (i itself included)
  R(i, k)    = {j in N(i, k) : i in N(j, k)}                                   k-reciprocal neighbours
  R*(i)      = R(i, k1) united with every R(c, k1/2), c in R(i, k1), that shares more than 2/3 of its
               members with R(i, k1)                                          expansion
  V[i, j]    = exp(-d(i, j)) / sum_{j' in R*(i)} exp(-d(i, j')) for j in R*(i), else 0
  V[i]      <- mean of V[j] over the k2 nearest images j of i                  local query expansion
  d_J(i, j)  = 1 - sum_k min(V[i,k], V[j,k]) / sum_k max(V[i,k], V[j,k])       Jaccard distance
             = 1 - m / (2 - m) with m = sum_k min(V[i,k], V[j,k]), as every row of V sums to 1
  d*(i, j)   = (1 - lambda) d_J(i, j) + lambda d(i, j)

Memory plan: no dense N x N matrix. One pass over blocks of the pairwise distances (upper triangle only:
the matrix is symmetric) keeps each image's nearest neighbours and its largest distance, and writes the raw
query-gallery block into the output; V is sparse (a few dozen entries per row); the Jaccard sums are
accumulated query-chunk by query-chunk from V's columns. Peak memory is about the (Q, G) output plus the
features plus a few blocks. Ties between equal distances may order differently from a stable sort
(continuous features rarely tie).
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

STORED_NEIGHBOURS = 32


def _squared_distances(a, b, a_sq, b_sq):
    """||a - b||^2 (A, B) = ||a||^2 + ||b||^2 - 2 a.b; rounding may leave tiny negatives (clamped by callers)."""
    return torch.addmm(b_sq[None], a, b.T, alpha=-2).add_(a_sq[:, None])


def _merge_nearest(best_d, best_i, rows, dist, col0, k):
    """Fold a block `dist` (R, B) (columns col0..col0+B) into the sorted k nearest of `rows`."""
    kk = min(k, dist.shape[1])
    block = torch.topk(dist, kk, dim=1, largest=False, sorted=False)
    cand_d = torch.cat([best_d[rows], block.values], 1)  # (R, k + kk)
    cand_i = torch.cat([best_i[rows], block.indices + col0], 1)
    top = torch.topk(cand_d, k, dim=1, largest=False)  # sorted: nearest first
    best_d[rows] = top.values
    best_i[rows] = cand_i.gather(1, top.indices)


def _merge_candidates(best_d, best_i, r, c, d, k):
    """Fold candidate pairs (row r, column c, distance d) into the sorted k nearest of their rows."""
    if len(r) == 0:
        return
    rows = torch.unique(r)
    all_r = torch.cat([rows.repeat_interleave(k), r])
    all_c = torch.cat([best_i[rows].flatten(), c])
    all_d = torch.cat([best_d[rows].flatten(), d])
    order = torch.argsort(all_d, stable=True)
    order = order[torch.argsort(all_r[order], stable=True)]  # grouped by row, nearest first
    counts = torch.bincount(all_r, minlength=int(rows.max()) + 1)[rows]
    offsets = counts.cumsum(0) - counts
    take = (offsets[:, None] + torch.arange(k, device=r.device)).flatten()  # the first k of each row
    best_d[rows] = all_d[order[take]].view(-1, k)
    best_i[rows] = all_c[order[take]].view(-1, k)


def _nearest_pass(x, sq, k, num_q, out, block, progress):
    """(nearest (N, k) sorted, their distances (N, k), row_max (N,)) over all pairs; the raw query-gallery
    distances are written to `out`.

    Diagonal blocks first, by top-k: every row then has k candidates and a threshold, its k-th distance so
    far. Off-diagonal blocks (upper triangle; the lower is its transpose) only pass on the few entries
    below a row's threshold, which is cheaper than a top-k over the block.
    """
    n = len(x)
    best_d = torch.full((n, k), float("inf"), dtype=x.dtype, device=x.device)
    best_i = torch.zeros((n, k), dtype=torch.long, device=x.device)
    row_max = torch.zeros(n, dtype=x.dtype, device=x.device)
    starts = range(0, n, block)
    pairs = [(a, a) for a in starts] + [(a, b) for a in starts for b in starts if b > a]
    for a, b in tqdm(pairs, desc="re-rank: neighbours", leave=False, disable=not progress):
        ra, rb = slice(a, min(a + block, n)), slice(b, min(b + block, n))
        dist = _squared_distances(x[ra], x[rb], sq[ra], sq[rb])  # (Ba, Bb)
        row_max[ra] = torch.maximum(row_max[ra], dist.amax(1))
        if a == b:
            _merge_nearest(best_d, best_i, ra, dist, b, k)
        else:
            i, j = (dist < best_d[ra, -1:]).nonzero(as_tuple=True)  # entries that beat row i's k-th
            _merge_candidates(best_d, best_i, i + a, j + b, dist[i, j], k)
            # the block below the diagonal is this one transposed: the same for the rows of block b
            row_max[rb] = torch.maximum(row_max[rb], dist.amax(0))
            i, j = (dist < best_d[rb, -1][None]).nonzero(as_tuple=True)
            _merge_candidates(best_d, best_i, j + b, i + a, dist[i, j], k)
        # query rows x gallery columns: queries come first, so these lie in this orientation only
        q_end, g_start = min(ra.stop, num_q), max(rb.start, num_q)
        if a < q_end and g_start < rb.stop:
            out[a:q_end, g_start - num_q:rb.stop - num_q] = dist[:q_end - a, g_start - b:].clamp(min=0)
    return best_i, best_d.clamp_(min=0), row_max.clamp_(min=torch.finfo(x.dtype).tiny)


def _reciprocal_mask(nearest, k, chunk):
    """(N, k) bool: j = nearest[i, m] (m < k) also has i among its k nearest."""
    fwd = nearest[:, :k]
    mask = torch.empty(fwd.shape, dtype=torch.bool, device=fwd.device)
    for s in range(0, len(fwd), chunk):
        rows = torch.arange(s, min(s + chunk, len(fwd)), device=fwd.device)
        mask[rows] = (fwd[fwd[rows]] == rows[:, None, None]).any(-1)  # fwd[fwd[rows]]: (C, k, k)
    return mask


def _expanded_sets(nearest, k, kh, chunk, progress):
    """Yield (rows (C,), members (C, L) with n = padding) of R*(i) for chunks of rows."""
    n = len(nearest)
    recip, recip_h = _reciprocal_mask(nearest, k, chunk), _reciprocal_mask(nearest, kh, chunk)
    base_all, half_all = nearest[:, :k], nearest[:, :kh]
    for s in tqdm(range(0, n, chunk), desc="re-rank: k-reciprocal sets", leave=False, disable=not progress):
        rows = torch.arange(s, min(s + chunk, n), device=nearest.device)
        base, in_base = base_all[rows], recip[rows]  # (C, k) R(i, k1), as a masked list
        half = half_all[base]  # (C, k, kh) N(c, k1/2) of every candidate c
        in_half = recip_h[base] & in_base[..., None]  # R(c, k1/2) of the candidates in R(i, k1)
        # |R(c, k1/2) & R(i, k1)| > 2/3 |R(c, k1/2)|
        shared = ((half[..., None] == base[:, None, None, :]) & in_base[:, None, None, :]).any(-1)  # (C, k, kh, k)
        overlap = (shared & in_half).sum(-1).double()
        accept = in_base & (overlap > 2.0 / 3 * in_half.sum(-1).double())
        members = torch.cat([torch.where(in_base, base, n),
                             torch.where(in_half & accept[..., None], half, n).flatten(1)], 1)  # (C, k + k*kh)
        members = members.sort(1).values
        dup = members[:, 1:] == members[:, :-1]
        members[:, 1:][dup] = n  # keep one of each
        members = members.sort(1).values
        width = max(int((members < n).sum(1).max()), 1)
        yield rows, members[:, :width]


def _member_distances(x, sq, rows, members, nearest, nearest_d):
    """Squared distances (C, L) from each row to its members: looked up among the row's stored nearest
    images where there (most are), computed from the features for the rest."""
    n = len(x)
    known, order = nearest[rows].sort(1)  # (C, K) ids ascending, to search in
    known_d = nearest_d[rows].gather(1, order)
    pos = torch.searchsorted(known, members.contiguous()).clamp_(max=known.shape[1] - 1)
    found = known.gather(1, pos) == members
    dist = torch.where(found, known_d.gather(1, pos), 0.0)
    r, c = ((~found) & (members < n)).nonzero(as_tuple=True)
    step = max(1, (1 << 24) // x.shape[1])  # bound the gathered (pairs, D) features
    for s in range(0, len(r), step):
        i, j = rows[r[s:s + step]], members[r[s:s + step], c[s:s + step]]
        dots = (x[i] * x[j]).sum(1)
        dist[r[s:s + step], c[s:s + step]] = (sq[i] + sq[j] - 2 * dots).clamp_(min=0)
    return dist


def _encode(x, sq, nearest, nearest_d, row_max, k, kh, chunk, progress):
    """V as COO (rows, cols, vals), sorted by row: Gaussian-kernel weights over each expanded set R*(i)."""
    n = len(x)
    all_rows, all_cols, all_vals = [], [], []
    for rows, members in _expanded_sets(nearest, k, kh, chunk, progress):
        valid = members < n
        dist = _member_distances(x, sq, rows, members, nearest, nearest_d)
        # V[i, j] = exp(-d(i, j)) / sum over R*(i), d scaled by row i's largest distance
        w = torch.where(valid, torch.exp(-dist / row_max[rows][:, None]), 0.0)
        w = w / w.sum(1, keepdim=True)
        all_rows.append(rows[:, None].expand_as(members)[valid])
        all_cols.append(members[valid])
        all_vals.append(w[valid])
    return torch.cat(all_rows), torch.cat(all_cols), torch.cat(all_vals)


def _row_pointers(rows, n):
    counts = torch.bincount(rows, minlength=n)
    return counts, counts.cumsum(0) - counts


def _gather_segments(starts, lengths):
    """Positions starts[s] + 0..lengths[s]-1 of every segment s, concatenated, and each position's segment."""
    seg = torch.repeat_interleave(torch.arange(len(starts), device=starts.device), lengths)
    offsets = lengths.cumsum(0) - lengths
    pos = starts[seg] + torch.arange(len(seg), device=starts.device) - offsets[seg]
    return pos, seg


def _query_expansion(v_rows, v_cols, v_vals, nearest, k2, chunk, progress):
    """V[i] <- mean of V[j] over the k2 nearest j of i (i itself first), as COO sorted by row."""
    n = len(nearest)
    counts, ptr = _row_pointers(v_rows, n)
    out = ([], [], [])
    for s in tqdm(range(0, n, chunk), desc="re-rank: query expansion", leave=False, disable=not progress):
        rows = torch.arange(s, min(s + chunk, n), device=nearest.device)
        nb = nearest[rows, :k2].flatten()  # (C * k2,)
        pos, seg = _gather_segments(ptr[nb], counts[nb])
        key = rows.repeat_interleave(k2)[seg] * n + v_cols[pos]  # (row, col) as one sortable int
        uniq, inverse = torch.unique(key, return_inverse=True)
        vals = torch.zeros(len(uniq), dtype=v_vals.dtype, device=v_vals.device)
        vals.index_add_(0, inverse, v_vals[pos] / k2)
        out[0].append(uniq // n)
        out[1].append(uniq % n)
        out[2].append(vals)
    return tuple(torch.cat(o) for o in out)


def _jaccard_into(out, row_max, v_rows, v_cols, v_vals, num_q, lambda_, chunk, progress):
    """out[i] <- (1 - lambda) d_J(i, gallery) + lambda out[i] / row_max[i], query chunk by query chunk."""
    n, num_g = len(row_max), out.shape[1]
    counts, ptr = _row_pointers(v_rows, n)
    # the gallery rows of V arranged by column: who else weighs column k, and how much
    in_gallery = v_rows >= num_q
    g_rows, g_cols, g_vals = v_rows[in_gallery] - num_q, v_cols[in_gallery], v_vals[in_gallery]
    by_col = torch.argsort(g_cols, stable=True)
    g_rows, g_vals = g_rows[by_col], g_vals[by_col]
    col_counts, col_ptr = _row_pointers(g_cols, n)
    budget = max(chunk, 1) * 8192  # (query entry, gallery entry) pairs per batch
    for s in tqdm(range(0, num_q, chunk), desc="re-rank: Jaccard", leave=False, disable=not progress):
        e = min(s + chunk, num_q)
        overlap = torch.zeros(e - s, num_g, dtype=out.dtype, device=out.device)  # sum_k min(V[i,k], V[j,k])
        entries = torch.arange(ptr[s], ptr[e - 1] + counts[e - 1], device=out.device)  # V's nonzeros in rows s..e
        lengths = col_counts[v_cols[entries]]
        ends = lengths.cumsum(0)
        first = 0
        while first < len(entries):
            last = int(torch.searchsorted(ends, ends[first] - lengths[first] + budget, right=True))
            last = max(last, first + 1)
            batch = entries[first:last]
            pos, seg = _gather_segments(col_ptr[v_cols[batch]], lengths[first:last])
            weight = torch.minimum(v_vals[batch][seg], g_vals[pos])
            overlap.view(-1).index_add_(0, (v_rows[batch][seg] - s) * num_g + g_rows[pos], weight)
            first = last
        jaccard = 1 - overlap / (2 - overlap)
        out[s:e] = (1 - lambda_) * jaccard + lambda_ * out[s:e] / row_max[s:e, None]


def re_rank(qf, gf, k1=20, k2=6, lambda_=0.3, chunk_size=2048, progress=False):
    """Re-ranked distances (Q, G) of query features `qf` (Q, D) to gallery features `gf` (G, D).

    The features are used as given (normalise them first, as the paper does). k1: size of the k-reciprocal
    neighbourhood; k2: neighbours averaged in the local query expansion (1: none); lambda_: weight of the
    original distance. `chunk_size` rows (and a block of chunk_size x chunk_size distances) at a time bound
    the memory. Runs on the features' device in their dtype (float32 or float64).
    """
    qf, gf = torch.as_tensor(qf), torch.as_tensor(gf)
    if qf.ndim != 2 or gf.ndim != 2 or qf.shape[1] != gf.shape[1] or 0 in (*qf.shape, *gf.shape):
        raise ValueError(f"features must be non-empty (Q, D) and (G, D) with the same D; got {tuple(qf.shape)} "
                         f"and {tuple(gf.shape)}")
    if qf.device != gf.device:
        raise ValueError(f"qf is on {qf.device} but gf on {gf.device}; move both to one device")
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1={k1} and k2={k2} must be >= 1 (the paper uses k1=20, k2=6)")
    if not 0 <= lambda_ <= 1:
        raise ValueError(f"lambda_={lambda_} must be in [0, 1] (the paper uses 0.3)")
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")
    dtype = qf.dtype if qf.dtype in (torch.float32, torch.float64) else torch.float32
    x = torch.cat([qf, gf]).to(dtype)  # (N, D): queries first
    num_q, n = len(qf), len(x)
    k, kh = min(k1 + 1, n), min(round(k1 / 2) + 1, n)  # neighbourhoods include the image itself
    k2 = min(k2, n)
    sq = x.pow(2).sum(1)  # (N,)
    out = torch.empty(num_q, n - num_q, dtype=dtype, device=x.device)
    # keep more neighbours than k1 + 1: the expanded sets mostly fall among them, so their distances are
    # looked up rather than recomputed from the features
    stored = min(n, max(k, k2, STORED_NEIGHBOURS))
    nearest, nearest_d, row_max = _nearest_pass(x, sq, stored, num_q, out, chunk_size, progress)
    v = _encode(x, sq, nearest, nearest_d, row_max, k, kh, chunk_size, progress)
    if k2 > 1:
        v = _query_expansion(*v, nearest, k2, chunk_size, progress)
    _jaccard_into(out, row_max, *v, num_q, lambda_, chunk_size, progress)
    return out
