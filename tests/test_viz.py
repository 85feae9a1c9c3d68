"""Reconstruction pictures: a finished batch's masked tubelets get the model's predictions (in
pixel units), its visible ones keep the input."""
import numpy as np
import torch

from mmdistill.data.device_batches import finish_batch
from mmdistill.data.masking import TubeMaskGenerator
from mmdistill.models.decoder import MaskedAutoencoder
from mmdistill.models.vit import video_vit
from mmdistill.train.objectives import MaskedAutoencoding
from mmdistill.train.targets import patch_stats, patchify, unpatchify
from mmdistill.viz import reconstruct


def test_reconstruction_puts_predictions_where_the_bool_mask_hides_tubelets():
    torch.manual_seed(0)
    encoder = video_vit(in_chans=2, num_frames=4, img_size=(32, 48), patch_size=16, embed_dim=32,
                        depth=1, num_heads=2)
    objective = MaskedAutoencoding(MaskedAutoencoder(encoder, decoder_dim=32, decoder_depth=1),
                                   modality="flow").eval()
    generator = TubeMaskGenerator(encoder.grid_size, 0.5)
    mask = torch.from_numpy(np.stack([generator(np.random.default_rng(i)) for i in range(2)]))
    video = torch.randn(2, 2, 4, 32, 48)
    batch = finish_batch({"flow": video, "mask": mask}, "cpu")
    shown, hidden, recon = reconstruct(objective, batch)

    with torch.no_grad():  # the bool-mask composition, VideoMAE's visualisation
        pred = objective.trainable(video, batch["visible_index"], batch["masked_index"])
    patches = patchify(video, 2, 16)
    b, n, p, c = patches.shape
    mean, std = patch_stats(patches)
    expected, blanked = patches.clone(), patches.clone()
    expected[mask] = (pred.reshape(b, -1, p, c) * std[mask].reshape(b, -1, 1, c)
                      + mean[mask].reshape(b, -1, 1, c)).reshape(-1, p, c)
    blanked[mask] = 0
    assert torch.equal(shown, video)
    torch.testing.assert_close(recon, unpatchify(expected, video.shape, 2, 16), rtol=0, atol=0)
    torch.testing.assert_close(hidden, unpatchify(blanked, video.shape, 2, 16), rtol=0, atol=0)
    assert not torch.equal(recon, video)
