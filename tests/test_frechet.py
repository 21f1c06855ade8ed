import pytest
import torch

from diffusion.measure import frechet_distance


def test_frechet_distance_of_gaussians():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20_000, 4, generator=g)
    assert frechet_distance(a, torch.randn(20_000, 4, generator=g)) == pytest.approx(0, abs=0.01)
    # Shifting the mean by 2 in one dimension adds 2^2; scaling by 2 adds (2 - 1)^2 per dimension.
    assert frechet_distance(a, a + torch.tensor([2.0, 0, 0, 0])) == pytest.approx(4, abs=0.01)
    assert frechet_distance(a, 2 * a) == pytest.approx(4, rel=0.03)
