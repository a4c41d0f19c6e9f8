"""The three losses of the recipe: label-smoothed ID loss, batch-hard triplet, center loss."""
import torch
import torch.nn.functional as F
from torch import nn


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """Losses are computed in fp32 (or fp64 when given) even under bf16 / fp16 autocast."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def cross_entropy_smooth(logits: torch.Tensor, targets: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """ID loss with label smoothing (eps = 0 gives plain cross-entropy)."""
    num_classes = logits.shape[1]
    log_p = F.log_softmax(at_least_fp32(logits), dim=1)  # (B, N)
    # q_i = 1 - eps + eps / N for the true class, eps / N otherwise
    q = torch.full_like(log_p, eps / num_classes)
    q.scatter_(1, targets[:, None], 1 - eps + eps / num_classes)
    # L_ID = mean over the batch of sum_i -q_i log p_i
    return (-q * log_p).sum(dim=1).mean()


def pairwise_euclidean(x: torch.Tensor) -> torch.Tensor:
    """(B, B) Euclidean distances, sqrt(clamp(d2, 1e-12)) as the authors compute them."""
    sq = x.pow(2).sum(dim=1, keepdim=True)  # (B, 1)
    d2 = sq + sq.t() - 2 * x @ x.t()  # ||a||^2 + ||b||^2 - 2 a.b
    return d2.clamp(min=1e-12).sqrt()


def batch_hard_triplet(feats: torch.Tensor, targets: torch.Tensor, margin: float = 0.3,
                       soft_margin: bool = False) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al.) on unnormalised features."""
    dist = pairwise_euclidean(at_least_fp32(feats))  # (B, B)
    same = targets[:, None] == targets[None, :]  # (B, B), the diagonal included as the authors do
    # hardest positive: d(a, p*) = max_{p: y_p = y_a} d(a, p); hardest negative: min over y_n != y_a
    hardest_pos = dist.masked_fill(~same, float("-inf")).max(dim=1).values  # (B,)
    hardest_neg = dist.masked_fill(same, float("inf")).min(dim=1).values  # (B,)
    if soft_margin:
        # L = log(1 + exp(d_ap - d_an))
        return F.softplus(hardest_pos - hardest_neg).mean()
    # L = [d_ap - d_an + m]_+
    return F.relu(hardest_pos - hardest_neg + margin).mean()


class CenterLoss(nn.Module):
    """Center loss (Wen et al.): L_C = sum_i ||f_t_i - c_{y_i}||^2 / B, one learnable center per identity."""

    def __init__(self, num_classes: int, feat_dim: int):
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))  # (N, D)

    def forward(self, feats: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        diff = at_least_fp32(feats) - self.centers[targets]  # (B, D)
        return diff.pow(2).sum(dim=1).clamp(1e-12, 1e12).mean()


def rescale_center_grads(center_loss: CenterLoss, beta: float) -> None:
    """Undo beta on the centers' gradient, so they move on the unweighted loss while beta scales the network's."""
    if center_loss.centers.grad is not None:
        center_loss.centers.grad.mul_(1.0 / beta)
