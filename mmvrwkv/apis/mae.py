"""What an MAE pre-training gives back as pictures: each image beside its
visible patches and the reconstruction of the removed ones."""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from .inference import list_images
from .model_builder import build_model
from .official_checkpoint import load_weights

GAP = 4  # pixels between the panels of a row


def reconstruct(model: torch.nn.Module, inputs: torch.Tensor,
                seed: int = 0) -> Dict[str, torch.Tensor]:
    """Mask ``inputs`` and reconstruct them with an mmpretrain ``MAE`` model
    (our masked backbone, decoder and ``MAEPretrainHead``).

    Args:
        model: the MAE model, in eval mode.
        inputs: (B, 3, H, W) images normalised as the model's data
            preprocessor does, H = W a multiple of the patch size.
        seed: seed of the random masking.

    Returns:
        dict: ``mask`` (B, L), 1 for a removed patch; ``masked`` and
        ``reconstruction`` (B, 3, H, W) in the same normalisation as
        ``inputs``: the removed patches zero, and the removed patches
        predicted beside the visible ones. With ``norm_pix`` targets the
        prediction is per-patch normalised pixels: it is shown with the
        original patch's mean and variance (as MAE's own pictures).
    """
    head = model.head
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        latent, mask, ids_restore = model.backbone(inputs)
        pred = model.neck(latent, ids_restore)
    target = head.patchify(inputs)
    if getattr(head, 'norm_pix', False):
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        pred = pred * (var + 1.e-6)**.5 + mean
    removed = mask[..., None].to(pred.dtype)
    return dict(
        mask=mask,
        masked=head.unpatchify(target * (1 - removed)),
        reconstruction=head.unpatchify(target * (1 - removed) +
                                       pred * removed))


def _to_uint8(img: torch.Tensor, mean, std) -> np.ndarray:
    """(3, H, W) normalised RGB -> (H, W, 3) uint8."""
    img = img.float().cpu() * torch.tensor(std)[:, None, None] + \
        torch.tensor(mean)[:, None, None]
    return img.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()


def save_reconstructions(config: str, checkpoint: Optional[str],
                         images: str, out: str, num: int = 4,
                         cfg_options: Optional[dict] = None,
                         seed: int = 0) -> List[str]:
    """Write one PNG per image of ``images`` (a file or a folder; the first
    ``num``): original | visible patches | reconstruction, side by side.

    The images are resized to the model's square input (the backbone's
    ``img_size``). Returns the written paths.
    """
    model = build_model(config, cfg_options, init_cfg=False).eval()
    if checkpoint is not None:
        load_weights(model, checkpoint)
    else:
        model.init_weights()
    pre = model.data_preprocessor
    mean = pre.mean.reshape(-1).tolist()
    std = pre.std.reshape(-1).tolist()
    size = tuple(model.backbone.patch_resolution)
    side = size[0] * model.backbone.patch_size
    paths = list_images(images)[:num]
    os.makedirs(out, exist_ok=True)
    written = []
    for i, path in enumerate(paths):
        rgb = Image.open(path).convert('RGB').resize((side, side),
                                                     Image.BICUBIC)
        x = torch.from_numpy(np.asarray(rgb, dtype=np.float32)).permute(
            2, 0, 1)
        x = (x - torch.tensor(mean)[:, None, None]) / \
            torch.tensor(std)[:, None, None]
        result = reconstruct(model, x[None], seed + i)
        panels = [np.asarray(rgb), _to_uint8(result['masked'][0], mean, std),
                  _to_uint8(result['reconstruction'][0], mean, std)]
        row = np.full((side, 3 * side + 2 * GAP, 3), 255, np.uint8)
        for j, panel in enumerate(panels):
            row[:, j * (side + GAP):j * (side + GAP) + side] = panel
        name = osp.join(out, osp.splitext(osp.basename(path))[0] + '.png')
        Image.fromarray(row).save(name)
        written.append(name)
    return written


def stack_rows(paths: Sequence[str], out: str) -> str:
    """The PNGs of :func:`save_reconstructions` stacked into one picture."""
    rows = [np.asarray(Image.open(p).convert('RGB')) for p in paths]
    width = max(r.shape[1] for r in rows)
    canvas = np.full((sum(r.shape[0] for r in rows) + GAP * (len(rows) - 1),
                      width, 3), 255, np.uint8)
    y = 0
    for r in rows:
        canvas[y:y + r.shape[0], :r.shape[1]] = r
        y += r.shape[0] + GAP
    Image.fromarray(canvas).save(out)
    return out
