import pytest
import torch

from diffusion import SAMPLERS, NoiseSchedule, UNet, classifier_free_guidance
from diffusion.samplers import ddim

from .conftest import TINY_UNET


def oracle_eps_fn(schedule: NoiseSchedule, image: torch.Tensor):
    """A perfect model for a one-image data set: the exact noise that separates x_t from `image`."""
    def eps_fn(x, t):
        alpha_bar = schedule.alphas_cumprod[t]
        return (x - alpha_bar.sqrt() * image) / (1 - alpha_bar).sqrt()
    return eps_fn


@pytest.mark.parametrize("sampler", list(SAMPLERS))
@pytest.mark.parametrize("steps", [1, 2, 10, 1000])
def test_every_sampler_recovers_the_image_an_oracle_knows(sampler, steps):
    schedule = NoiseSchedule()
    generator = torch.Generator().manual_seed(1)
    image = torch.rand((2, 1, 28, 28), generator=generator) * 2 - 1
    x_T = torch.randn(image.shape, generator=generator)
    timesteps = schedule.timesteps(steps)
    trajectory = list(SAMPLERS[sampler](oracle_eps_fn(schedule, image), x_T, schedule, timesteps, generator))
    assert [s.index for s in trajectory] == list(range(steps))
    assert [s.timestep for s in trajectory] == timesteps
    # One step predicts x0 at t = T-1 alone, where float32 rounding of eps is amplified by
    # 1/sqrt(alpha_bar) (2e4 with the cosine schedule); later steps correct it.
    tolerance = 1e-2 if steps == 1 else 1e-4
    assert torch.allclose(trajectory[-1].x, image, atol=tolerance)
    assert torch.allclose(trajectory[-1].x0, image, atol=tolerance)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_samplers_keep_shape_and_stay_finite_with_a_real_network(sampler):
    torch.manual_seed(0)
    model = UNet(TINY_UNET).eval()
    schedule = NoiseSchedule()
    labels = torch.tensor([0, 5, 9])
    eps_fn = classifier_free_guidance(model, labels, 3.0, TINY_UNET.null_label)
    x_T = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        for step in SAMPLERS[sampler](eps_fn, x_T, schedule, schedule.timesteps(5), torch.Generator().manual_seed(0)):
            assert step.x.shape == step.x0.shape == x_T.shape
            assert torch.isfinite(step.x).all() and step.x0.abs().max() <= 1
    assert step.x.abs().max() <= 1  # the final image is the last clipped x0


def test_ddim_with_eta_zero_is_deterministic_and_ddpm_is_not():
    torch.manual_seed(0)
    model = UNet(TINY_UNET).eval()
    schedule = NoiseSchedule()
    eps_fn = classifier_free_guidance(model, torch.tensor([1, 2]), 2.0, TINY_UNET.null_label)
    x_T = torch.randn(2, 1, 28, 28)

    def final(sampler, seed, **options):
        with torch.no_grad():
            *_, last = sampler(eps_fn, x_T, schedule, schedule.timesteps(8), torch.Generator().manual_seed(seed), **options)
        return last.x

    assert torch.equal(final(ddim, 0), final(ddim, 1))  # eta = 0 draws no noise
    assert not torch.equal(final(ddim, 0, eta=1.0), final(ddim, 1, eta=1.0))
    assert not torch.equal(final(SAMPLERS["ddpm"], 0), final(SAMPLERS["ddpm"], 1))
    assert torch.equal(final(SAMPLERS["ddpm"], 3), final(SAMPLERS["ddpm"], 3))


class LabelEcho(torch.nn.Module):
    """A fake model whose 'noise' is its label, so the guidance arithmetic can be read off; counts calls."""

    def __init__(self):
        super().__init__()
        self.batch_sizes = []

    def forward(self, x, t, labels):
        self.batch_sizes.append(len(x))
        return labels.float().view(-1, 1, 1, 1).expand_as(x)


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0, 7.5])
def test_classifier_free_guidance_formula_in_one_batched_pass(w):
    model, null = LabelEcho(), 10
    labels = torch.tensor([2, 4])
    eps = classifier_free_guidance(model, labels, w, null)(torch.zeros(2, 1, 4, 4), 500)
    expected = null + w * (labels.float() - null)  # eps_uncond + w * (eps_cond - eps_uncond)
    assert torch.allclose(eps[:, 0, 0, 0], expected)
    # one forward pass per step: batched (cond + uncond) when guiding, half the batch at w = 0 or 1
    assert model.batch_sizes == ([2] if w in (0.0, 1.0) else [4])


@pytest.mark.parametrize("w, t, guided", [
    (3.0, 500, True), (3.0, 400, True), (3.0, 600, True),  # inside the interval, its ends included
    (3.0, 399, False), (3.0, 601, False), (3.0, 999, False),  # outside: plain conditional, half the batch
    (0.0, 999, True), (0.5, 999, True),  # towards unconditional applies everywhere: 0 stays unconditional
])
def test_guidance_interval_guides_only_inside_it_and_halves_the_work_outside(w, t, guided):
    model, null = LabelEcho(), 10
    labels = torch.tensor([2, 4])
    eps = classifier_free_guidance(model, labels, w, null, guidance_interval=(400, 600))(torch.zeros(2, 1, 4, 4), t)
    expected = null + w * (labels.float() - null) if guided else labels.float()
    assert torch.allclose(eps[:, 0, 0, 0], expected)
    assert model.batch_sizes == ([2] if w == 0.0 or not guided else [4])


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_unet_output_has_the_input_shape_for_any_labels(batch):
    model = UNet(TINY_UNET)
    x = torch.randn(batch, 1, 28, 28)
    labels = torch.arange(batch) % (TINY_UNET.num_classes + 1)  # the null class included
    out = model(x, torch.randint(0, 1000, (batch,)), labels)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_unet_config_checks_its_sizes():
    from diffusion import UNetConfig
    with pytest.raises(ValueError, match="divisible"):
        UNetConfig(image_size=28, channels=(8, 16, 32, 64))
    with pytest.raises(ValueError, match="norm_groups"):
        UNetConfig(channels=(12, 24), norm_groups=8)
