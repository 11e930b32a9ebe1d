"""MixBlock: shapes, the parameter count of each form, and a mask that partitions every pixel."""
import pytest
import torch

from mixunlearn.mixblock import MixBlock, mix, plain_mixup_mask


FORMS = [("two_way", "relu"), ("two_way", "none"), ("one_way", "relu"), ("one_way", "none")]
OPTIONS = [{"upsample": "nearest"}, {"upsample": "bilinear"}, {"lambda_concat": False}]


@pytest.mark.parametrize("act", ["relu", "none"])
def test_parameter_count_matches_the_paper_at_256_channels(act):
    # 2 * (257*128 + 128) + 257 + 1: q and k (1x1 conv + bias) and v (1x1 conv to one channel).
    assert sum(p.numel() for p in MixBlock(256, act=act).parameters()) == 66_306


@pytest.mark.parametrize("act", ["relu", "none"])
def test_one_way_has_openmixups_parameter_count_at_256_channels(act):
    # METHOD.md: one q/k conv 257*128 + 128 and the value conv 257 + 1.
    assert sum(p.numel() for p in MixBlock(256, form="one_way", act=act).parameters()) == 33_282


@pytest.mark.parametrize("form, act", FORMS)
def test_mask_shape_and_partition_of_unity(form, act):
    torch.manual_seed(0)
    g = MixBlock(32, form=form, act=act)
    for p in g.parameters():            # away from the near-constant init, so the sum is tested on real masks
        torch.nn.init.normal_(p, 0.0, 0.3)
    h_f, h_r = torch.randn(5, 32, 7, 7), torch.randn(5, 32, 7, 7)
    lam = torch.distributions.Beta(0.75, 0.75).sample((5,))
    mask = g(h_f, h_r, lam, image_size=28)
    assert mask.shape == (5, 2, 28, 28)
    assert torch.all(mask >= 0)
    torch.testing.assert_close(mask.sum(dim=1), torch.ones(5, 28, 28))


@pytest.mark.parametrize("form, act", FORMS)
def test_mask_depends_on_lambda_and_on_the_features(form, act):
    torch.manual_seed(0)
    g = MixBlock(16, form=form, act=act)
    for p in g.parameters():            # larger weights than the N(0, 0.01) init so the effect is visible
        torch.nn.init.normal_(p, 0.0, 0.5)
    h_f, h_r = torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4)
    lam = torch.tensor([0.1, 0.9])
    base = g(h_f, h_r, lam, image_size=8)
    assert not torch.allclose(base, g(h_f, h_r, 1 - lam, image_size=8))
    assert not torch.allclose(base, g(h_f, torch.randn_like(h_r), lam, image_size=8))


def test_mixed_image_is_a_pixelwise_convex_combination():
    x_f, x_r = torch.zeros(3, 1, 8, 8), torch.ones(3, 1, 8, 8)
    lam = torch.tensor([0.0, 0.25, 1.0])
    mixed = mix(x_f, x_r, plain_mixup_mask(lam, 8))
    torch.testing.assert_close(mixed[:, 0, 3, 3], 1 - lam)


@pytest.mark.parametrize("form", ["two_way", "one_way"])
def test_every_form_starts_as_a_near_constant_even_blend(form):
    # METHOD.md: with N(0, 0.01) weights every form gives M ~ 0.5 everywhere, whatever lambda is.
    torch.manual_seed(0)
    mask = MixBlock(64, form=form)(torch.randn(6, 64, 7, 7), torch.randn(6, 64, 7, 7),
                                   torch.tensor([0.0, 0.1, 0.3, 0.7, 0.9, 1.0]), image_size=28)
    assert (mask[:, 0] - 0.5).abs().max() < 0.02   # measured: 0.011 (two_way), on unit-variance features


def test_without_lambda_concat_g_reads_c_channels_and_ignores_lambda():
    # AdaptiveMask with lam_concat false: q, k and v read C channels: 2 * (256*128 + 128) + 256 + 1.
    assert sum(p.numel() for p in MixBlock(256, lambda_concat=False).parameters()) == 66_049
    torch.manual_seed(0)
    g = MixBlock(16, lambda_concat=False)
    for p in g.parameters():
        torch.nn.init.normal_(p, 0.0, 0.5)
    h_f, h_r = torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4)
    torch.testing.assert_close(g(h_f, h_r, torch.tensor([0.1, 0.9]), 8), g(h_f, h_r, torch.tensor([0.9, 0.1]), 8),
                               rtol=0, atol=0)


@pytest.mark.parametrize("form", ["two_way", "one_way"])
def test_bilinear_upsampling_smooths_the_mask_nearest_keeps_its_blocks(form):
    torch.manual_seed(0)
    masks = {}
    for upsample in ("nearest", "bilinear"):
        torch.manual_seed(0)
        g = MixBlock(16, form=form, upsample=upsample)
        for p in g.parameters():
            torch.nn.init.normal_(p, 0.0, 0.5)
        torch.manual_seed(1)
        masks[upsample] = g(torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4), torch.tensor([0.3, 0.7]), 16)[:, 0]
    blocks = masks["nearest"].unfold(1, 4, 4).unfold(2, 4, 4)                    # [2, 4, 4, 4, 4]: 4x4 pixel blocks
    assert torch.all(blocks == blocks[..., :1, :1])                              # constant within each block
    assert not torch.allclose(masks["bilinear"], masks["nearest"])
    torch.testing.assert_close(masks["bilinear"].mean(), masks["nearest"].mean(), atol=0.05, rtol=0)


@pytest.mark.parametrize("form", ["two_way", "one_way"])
@pytest.mark.parametrize("options", OPTIONS)
def test_g_runs_in_float32_under_the_callers_bf16_autocast(form, options):
    """AdaptiveMask computes its attention in float32: under CPU bf16 autocast G's mask is float32 and
    the mask computed without autocast, to 1e-6 (bf16 would round 0.5 +- 1e-3 to 0.5)."""
    torch.manual_seed(0)
    g = MixBlock(32, form=form, **options)
    h_f, h_r, lam = torch.randn(4, 32, 7, 7), torch.randn(4, 32, 7, 7), torch.tensor([0.1, 0.4, 0.6, 0.9])
    plain = g(h_f, h_r, lam, 28)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = g(h_f, h_r, lam, 28)
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16   # autocast is on here
    assert plain.dtype == under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, plain, rtol=0, atol=1e-6)
    assert (plain[:, 0] - 0.5).abs().max() > 1e-4   # a mask bf16 could not hold (its step at 0.5 is 2^-8)
