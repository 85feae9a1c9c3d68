"""Embedding only the visible tubelets equals embedding all of them, then gathering."""
import pytest
import torch

from mmdistill.data.masking import token_indices
from mmdistill.models.vit import TubeletEmbed, video_vit


def _random_masks(batch: int, grid: tuple[int, int, int], ratio: float, seed: int) -> torch.Tensor:
    """Tube masks (the same spatial mask on every time slice), as the loader makes them."""
    generator = torch.Generator().manual_seed(seed)
    spatial = grid[1] * grid[2]
    rows = []
    for _ in range(batch):
        mask = torch.zeros(spatial, dtype=torch.bool)
        mask[torch.randperm(spatial, generator=generator)[:int(ratio * spatial)]] = True
        rows.append(mask.repeat(grid[0]))
    return torch.stack(rows)


def _gathered(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.gather(tokens, 1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


@pytest.mark.parametrize("channels", [3, 2, 17])
@pytest.mark.parametrize("masked", [True, False])
def test_visible_embedding_equals_embed_all_then_gather(channels, masked):
    torch.manual_seed(channels)
    embed = TubeletEmbed(in_chans=channels, embed_dim=32, tubelet_size=2, patch_size=8)
    x = torch.randn(3, channels, 6, 24, 40)
    grid = (3, 3, 5)
    index = token_indices(_random_masks(3, grid, 0.75, seed=channels))[0] if masked else None

    everything = embed(x)  # the path without an index: all tubelets
    reference = _gathered(everything, index) if masked else everything
    embedded = embed(x, index)
    torch.testing.assert_close(embedded, reference, rtol=1e-5, atol=1e-5)
    assert embedded.shape == (3, index.shape[1] if masked else 45, 32)

    # The same gradient reaches the projection (weight and bias) either way.
    upstream = torch.randn_like(embedded)
    reference_grads = torch.autograd.grad((reference * upstream).sum(), [embed.proj.weight, embed.proj.bias])
    grads = torch.autograd.grad((embed(x, index) * upstream).sum(), [embed.proj.weight, embed.proj.bias])
    for got, want in zip(grads, reference_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_visible_embedding_picks_each_clips_own_tubelets():
    """Clip b's token n is its own block n: a block changed in one clip moves only that token."""
    embed = TubeletEmbed(in_chans=2, embed_dim=8, tubelet_size=2, patch_size=4)
    x = torch.zeros(2, 2, 4, 8, 12)
    x[1, :, 2:4, 4:8, 8:12] = 1.0  # clip 1, time slice 1, row 1, column 2: token (1 * 2 + 1) * 3 + 2 = 11
    index = torch.tensor([[0, 11, 5], [0, 11, 5]])
    tokens = embed(x, index)
    bias = embed.proj.bias
    torch.testing.assert_close(tokens[0], bias.expand(3, -1))
    torch.testing.assert_close(tokens[1, [0, 2]], bias.expand(2, -1))
    assert not torch.allclose(tokens[1, 1], bias)


@pytest.mark.parametrize("pos_embed", ["sincos", "learned"])
def test_masked_model_equals_full_model_gathered_with_gradients(pos_embed):
    """The whole model: the position table is gathered like the tubelets; the loss gradient with
    respect to the embedding weights (and a learned table) is the same as gathering after."""
    torch.manual_seed(0)
    model = video_vit(size="tiny", depth=1, in_chans=17, num_frames=4, img_size=(32, 48),
                      patch_size=16, pos_embed=pos_embed).eval()
    x = torch.randn(2, 17, 4, 32, 48)
    index = token_indices(_random_masks(2, model.grid_size, 0.5, seed=1))[0]

    def old_path():  # embed everything, add the table, then gather (the path before)
        tokens = model.patch_embed(x) + model.pos_embed
        tokens = _gathered(tokens, index)
        for block in model.blocks:
            tokens = block(tokens)
        return model.norm(tokens)

    parameters = [model.patch_embed.proj.weight, model.patch_embed.proj.bias]
    if pos_embed == "learned":
        parameters.append(model.pos_embed)
    want = old_path()
    got, _ = model(x, index)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    upstream = torch.randn_like(want)  # not a sum of squares: LayerNorm makes that constant
    want_grads = torch.autograd.grad((want * upstream).sum(), parameters)
    got_grads = torch.autograd.grad((model(x, index)[0] * upstream).sum(), parameters)
    for g, w in zip(got_grads, want_grads):  # float32 sums in another order: tolerance by scale
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * float(w.abs().max()))
