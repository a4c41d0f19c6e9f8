"""Losses checked against references computed another way (the micrograd way)."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from reidlab.losses import CenterLoss, batch_hard_triplet, cross_entropy_smooth, rescale_center_grads


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_equals_torch(eps):
    torch.manual_seed(0)
    logits, targets = torch.randn(16, 751) * 3, torch.randint(0, 751, (16,))
    ours = cross_entropy_smooth(logits, targets, eps)
    ref = F.cross_entropy(logits, targets, label_smoothing=eps)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)


def test_label_smoothing_gradient_equals_torch():
    torch.manual_seed(1)
    a = torch.randn(8, 10, requires_grad=True)
    b = a.detach().clone().requires_grad_(True)
    t = torch.randint(0, 10, (8,))
    cross_entropy_smooth(a, t, 0.1).backward()
    F.cross_entropy(b, t, label_smoothing=0.1).backward()
    torch.testing.assert_close(a.grad, b.grad)


def triplet_double_loop(feats, targets, margin, soft):
    """Plain reference: for each anchor, scan every other sample."""
    n, losses = len(feats), []
    for a in range(n):
        d_ap, d_an = -float("inf"), float("inf")
        for j in range(n):
            d = max(float(((feats[a] - feats[j]) ** 2).sum()), 1e-12) ** 0.5
            if targets[j] == targets[a]:
                d_ap = max(d_ap, d)
            else:
                d_an = min(d_an, d)
        x = d_ap - d_an
        losses.append(math.log1p(math.exp(x)) if soft else max(x + margin, 0.0))
    return sum(losses) / n


@pytest.mark.parametrize("soft", [False, True])
def test_batch_hard_triplet_equals_double_loop(soft):
    torch.manual_seed(2)
    targets = torch.arange(4).repeat_interleave(4)  # P x K = 4 x 4
    feats = torch.randn(16, 8, dtype=torch.float64)
    ours = batch_hard_triplet(feats, targets, 0.3, soft).item()
    assert ours == pytest.approx(triplet_double_loop(feats, targets, 0.3, soft), rel=1e-6, abs=1e-6)


def test_batch_hard_triplet_with_ties():
    # duplicated features: several positives / negatives at exactly the same distance
    base = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    feats = torch.cat([base, base, base[[1, 0, 3, 2]]])  # (12, 2)
    targets = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3])
    for margin, soft in itertools.product([0.0, 0.3, 2.0], [False, True]):
        ours = batch_hard_triplet(feats, targets, margin, soft).item()
        assert ours == pytest.approx(triplet_double_loop(feats, targets, margin, soft), abs=1e-9)


def test_triplet_is_zero_when_classes_are_far_apart():
    feats = torch.cat([torch.zeros(4, 3), torch.full((4, 3), 10.0)])
    targets = torch.tensor([0] * 4 + [1] * 4)
    assert batch_hard_triplet(feats, targets, margin=0.3).item() == 0.0


def test_center_loss_value_is_sum_of_squares_over_batch():
    torch.manual_seed(3)
    center = CenterLoss(5, 4)
    feats, targets = torch.randn(6, 4), torch.tensor([0, 1, 1, 4, 2, 0])
    expected = sum(((feats[i] - center.centers[targets[i]]) ** 2).sum() for i in range(6)) / 6  # no 1/2
    torch.testing.assert_close(center(feats, targets), expected)


def test_center_loss_one_step_matches_hand_computation():
    """One step of the recipe: L = beta L_C; centers' grads x 1/beta; SGD on the centers and on the network."""
    torch.manual_seed(4)
    beta, center_lr, net_lr = 0.0005, 0.5, 0.1
    x = torch.randn(6, 3, dtype=torch.float64)
    targets = torch.tensor([0, 1, 1, 2, 0, 2])
    net = torch.nn.Linear(3, 4, bias=False).double()
    center = CenterLoss(3, 4).double()
    w0, c0 = net.weight.detach().clone(), center.centers.detach().clone()
    net_opt = torch.optim.SGD(net.parameters(), lr=net_lr)
    center_opt = torch.optim.SGD(center.parameters(), lr=center_lr)

    loss = beta * center(net(x), targets)
    loss.backward()
    rescale_center_grads(center, beta)
    center_opt.step()
    net_opt.step()

    # by hand: f_i = W x_i; dL/df_i = beta * 2 (f_i - c_{y_i}) / B; dL_C/dc_j = -2 sum_{y_i=j} (f_i - c_j) / B
    f = x @ w0.t()
    diff = f - c0[targets]  # (B, D)
    grad_f = beta * 2 * diff / len(x)
    w1 = w0 - net_lr * grad_f.t() @ x
    grad_c = torch.zeros_like(c0).index_add_(0, targets, -2 * diff / len(x))  # unweighted: beta undone
    c1 = c0 - center_lr * grad_c
    torch.testing.assert_close(net.weight.detach(), w1)
    torch.testing.assert_close(center.centers.detach(), c1)
