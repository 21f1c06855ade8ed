import pytest
import torch

from diffusion import NoiseSchedule, ScheduleConfig


@pytest.mark.parametrize("beta_schedule", ["linear", "cosine"])
def test_alphas_cumprod_fall_from_one_to_zero(beta_schedule):
    alphas_cumprod = NoiseSchedule(ScheduleConfig(beta_schedule=beta_schedule)).alphas_cumprod
    assert alphas_cumprod.dtype == torch.float32
    assert (alphas_cumprod[1:] < alphas_cumprod[:-1]).all()
    assert 0.99 < alphas_cumprod[0] <= 1 and 0 <= alphas_cumprod[-1] < 1e-3


@pytest.mark.parametrize("t", [0, 250, 999])
def test_q_sample_has_the_closed_form_moments(t):
    schedule = NoiseSchedule()
    x0 = torch.full((20_000, 1, 2, 2), 0.5)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    x_t = schedule.q_sample(x0, torch.full((len(x0),), t), noise)
    alpha_bar = schedule.alphas_cumprod[t]
    assert x_t.mean().item() == pytest.approx(0.5 * alpha_bar.sqrt().item(), abs=0.01)
    assert x_t.std().item() == pytest.approx((1 - alpha_bar).sqrt().item(), rel=0.02, abs=1e-3)


def test_trailing_timesteps_start_at_the_last_timestep():
    schedule = NoiseSchedule()
    assert schedule.timesteps(1) == [999]
    assert schedule.timesteps(4) == [999, 749, 499, 249]
    assert schedule.timesteps(1000) == list(range(999, -1, -1))
    for steps in (3, 7, 20, 999):
        timesteps = schedule.timesteps(steps)
        assert len(timesteps) == steps and timesteps[0] == 999
        assert all(a > b >= 0 for a, b in zip(timesteps, timesteps[1:]))


def test_a_fitted_schedule_is_kept_at_its_own_step_count_and_stretched_to_any_other():
    schedule = NoiseSchedule()
    fitted = (999, 960, 777, 682, 523, 328, 164, 104, 44)
    assert schedule.timesteps(9, fitted=fitted) == list(fitted)
    assert schedule.timesteps(18, fitted=fitted)[::2] == list(fitted), "twice the steps: one more between each two"
    assert schedule.timesteps(18, fitted=fitted)[1] == (999 + 960) // 2
    even = tuple(schedule.timesteps(9))
    for steps in (2, 5, 12, 50):
        stretched = schedule.timesteps(steps, fitted=even)  # even spacing stretches to itself, but for rounding
        assert max(abs(a - b) for a, b in zip(stretched, schedule.timesteps(steps))) <= 1
    for steps in (1, 3, 6, 20, 100, 500, 1000):  # denser than the fit's gaps allow: still distinct, falling
        timesteps = schedule.timesteps(steps, fitted=fitted)
        assert len(timesteps) == steps and timesteps[0] == 999
        assert all(a > b >= 0 for a, b in zip(timesteps, timesteps[1:]))


@pytest.mark.parametrize("steps", [0, -1, 1001])
def test_timesteps_out_of_range_are_refused(steps):
    with pytest.raises(ValueError, match="steps must be between 1 and 1000"):
        NoiseSchedule().timesteps(steps)


def test_bad_schedule_config_is_refused():
    with pytest.raises(ValueError, match="beta_schedule"):
        ScheduleConfig(beta_schedule="quadratic")
