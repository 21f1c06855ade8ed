import torch

from diffusion import Pipeline, SamplingConfig
from diffusion.tune import fit_timesteps


def test_the_fit_improves_keeps_the_guided_count_and_starts_from_pure_noise(tiny_pipeline):
    torch.manual_seed(0)
    settings = SamplingConfig(steps=5, guidance_scale=3.0, guidance_interval=(40, 70))
    pipe = Pipeline(tiny_pipeline.model, tiny_pipeline.schedule, settings)
    start = pipe.timesteps(5)  # 99, 79, 59, 39, 19: two guided
    timesteps, facts = fit_timesteps(pipe, settings, per_digit=1, reference_steps=50)
    assert timesteps != start and facts["error_after"] < facts["error_before"], "the fit moved the steps, for the better"
    assert facts["samples"] == 10  # one of each digit
    assert len(timesteps) == 5 and timesteps[0] == 99 and all(a > b >= 0 for a, b in zip(timesteps, timesteps[1:]))
    assert sum(40 <= t <= 70 for t in timesteps) == sum(40 <= t <= 70 for t in start)
    assert fit_timesteps(pipe, settings, per_digit=1, reference_steps=50)[0] == timesteps, "the same fit again"
