"""Property tests (hypothesis): the library's checks accept exactly the valid settings, and
every sampler keeps its promises for any settings it accepts."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusion import SAMPLERS, NoiseSchedule, Pipeline, SamplingConfig, ScheduleConfig, UNet
from diffusion.settings import MAX_GUIDANCE_SCALE, MAX_SEED

from .conftest import TINY_UNET

torch.manual_seed(0)
# Built once here rather than in a fixture: hypothesis runs each test body many times.
PIPE = Pipeline(UNet(TINY_UNET), NoiseSchedule(ScheduleConfig(num_timesteps=100)), SamplingConfig(steps=4))
T = PIPE.schedule.num_timesteps

anything = st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.lists(st.integers(0, 9), max_size=2))


@settings(max_examples=300, deadline=None)
@given(digits=st.one_of(st.lists(st.integers(-2, 12), max_size=4), anything),
       guidance_scale=st.one_of(st.floats(-5, 200), st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 200),
                                anything),
       sampler=st.one_of(st.sampled_from([*SAMPLERS, "euler", ""]), anything),
       steps=st.one_of(st.integers(-3, T + 3), anything),
       seed=st.one_of(st.integers(-3, 2**64), anything),
       samples_per_digit=st.one_of(st.integers(-2, 5), anything))
def test_settings_accept_exactly_the_valid_ones(digits, guidance_scale, sampler, steps, seed, samples_per_digit):
    def integer(value):
        return type(value) is int

    valid = (isinstance(digits, list) and len(digits) > 0 and all(integer(d) and 0 <= d <= 9 for d in digits)
             and (guidance_scale is None or type(guidance_scale) in (int, float) and math.isfinite(guidance_scale)
                  and 0 <= guidance_scale <= MAX_GUIDANCE_SCALE)  # None: the weights' recommendation
             and (sampler is None or isinstance(sampler, str) and sampler in SAMPLERS)
             and (steps is None or integer(steps) and 1 <= steps <= T)
             and integer(seed) and 0 <= seed <= MAX_SEED
             and integer(samples_per_digit) and samples_per_digit >= 1)
    try:
        PIPE.settings(digits, seed, guidance_scale, sampler, steps, samples_per_digit)
        accepted = True
    except ValueError as e:
        accepted = False
        assert "must be" in str(e)  # every refusal says what is allowed
    assert accepted == valid


@settings(max_examples=40, deadline=None)
@given(sampler=st.sampled_from(list(SAMPLERS)), steps=st.integers(1, 12), digits=st.lists(st.integers(0, 9), min_size=1,
       max_size=3), samples_per_digit=st.integers(1, 2), guidance_scale=st.floats(0, 10), seed=st.integers(0, MAX_SEED))
def test_samplers_keep_their_promises(sampler, steps, digits, samples_per_digit, guidance_scale, seed):
    options = {"guidance_scale": guidance_scale, "sampler": sampler, "steps": steps, "seed": seed,
               "samples_per_digit": samples_per_digit}
    stream = list(PIPE.sample_steps(PIPE.settings(digits, **options)))

    assert [step.index for step in stream] == list(range(steps))
    timesteps = [step.timestep for step in stream]
    assert timesteps == sorted(set(timesteps), reverse=True) and 0 <= timesteps[-1] and timesteps[0] == T - 1
    shape = (len(digits) * samples_per_digit, 1, 28, 28)
    for step in stream:
        assert step.x.shape == step.x0.shape == shape
        assert torch.isfinite(step.x).all() and torch.isfinite(step.x0).all()
        assert step.x0.abs().max() <= 1  # clean-image estimates stay in the data range
    final = stream[-1].x
    assert final.abs().max() <= 1, "the final image lies in [-1, 1]"
    assert torch.equal(final, PIPE.generate(PIPE.settings(digits, **options))), "the same seed and settings give the same images"
