"""ReStyle iteration: the start, one encoder call per step, residuals add up, gradients."""

from __future__ import annotations

import pytest
import torch

from lsap.encoders import Encoder4Editing, GradualStyleEncoder
from lsap.encoders.checkpoints import save_e4e_checkpoint
from lsap.encoders.restyle import load_restyle_encoder, restyle_invert

from conftest import small_source


def restyle_encoder(kind=Encoder4Editing, num_ws: int = 8) -> torch.nn.Module:
    return kind(num_ws=num_ws, input_size=32, input_channels=6, blocks_per_stage=[1, 1, 1, 1],
                stage_channels=[8, 16, 32, 48])


def zero_heads(encoder: torch.nn.Module) -> None:
    with torch.no_grad():
        for style in encoder.styles:
            style.linear.weight.zero_()
            style.linear.bias.zero_()


@pytest.mark.parametrize("kind", [Encoder4Editing, GradualStyleEncoder])
def test_one_step_with_zero_residual_is_the_latent_avg_image(kind):
    generator = small_source().build()
    encoder = restyle_encoder(kind).eval()
    zero_heads(encoder)
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        result = restyle_invert(encoder, generator, images, generator.w_avg, num_steps=1)
        expected = generator.synthesis(generator.w_avg[None].expand(1, generator.num_ws, -1))
    assert len(result.ws) == len(result.images) == 2
    torch.testing.assert_close(result.final_ws, generator.w_avg.expand(3, generator.num_ws, -1))
    torch.testing.assert_close(result.final_image, expected.expand(3, -1, -1, -1))


def test_each_step_is_one_encoder_call_and_residuals_accumulate():
    generator = small_source().build()
    encoder = restyle_encoder().eval()
    inputs, outputs = [], []

    def record(module, args, out):
        inputs.append(args[0])
        outputs.append(out)

    encoder.register_forward_hook(record)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        result = restyle_invert(encoder, generator, images, generator.w_avg, num_steps=5)
    assert len(inputs) == 5 and len(result.ws) == 6
    for step in range(5):
        assert inputs[step].shape == (2, 6, 32, 32)
        torch.testing.assert_close(inputs[step][:, :3], images)  # the target, every step
        torch.testing.assert_close(inputs[step][:, 3:], result.images[step].clamp(-1, 1).expand(2, -1, -1, -1))
        torch.testing.assert_close(result.ws[step + 1], result.ws[step] + outputs[step])
    with torch.no_grad():
        torch.testing.assert_close(result.final_image, generator.synthesis(result.final_ws))


def test_grad_steps_keeps_gradients_only_in_the_last_steps():
    generator = small_source().build()
    encoder = restyle_encoder()
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    result = restyle_invert(encoder, generator, images, generator.w_avg, num_steps=3, grad_steps=1)
    assert not result.ws[2].requires_grad and result.ws[3].requires_grad
    result.final_image.mean().backward()
    assert any(p.grad is not None for p in encoder.parameters())


def test_wrong_encoders_are_clear_errors(tmp_path):
    generator = small_source().build()
    plain = Encoder4Editing(num_ws=8, input_size=32, blocks_per_stage=[1, 1, 1, 1], stage_channels=[8, 16, 32, 48])
    with pytest.raises(ValueError, match="input_channels=6"):
        restyle_invert(plain, generator, torch.zeros(1, 3, 32, 32), generator.w_avg)
    with pytest.raises(ValueError, match="num_ws"):
        restyle_invert(restyle_encoder(num_ws=6), generator, torch.zeros(1, 3, 32, 32), generator.w_avg)
    save_e4e_checkpoint(tmp_path / "plain.pt", plain, generator.w_avg)
    with pytest.raises(ValueError, match="not a ReStyle encoder"):
        load_restyle_encoder(tmp_path / "plain.pt")
    encoder = restyle_encoder()
    save_e4e_checkpoint(tmp_path / "restyle.pt", encoder, generator.w_avg, opts={"restyle_steps": 3})
    loaded = load_restyle_encoder(tmp_path / "restyle.pt")
    assert loaded.num_steps == 3 and loaded.encoder.input_channels == 6
    torch.testing.assert_close(loaded.latent_avg[0], generator.w_avg)
