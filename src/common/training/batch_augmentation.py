"""The augmentation of training batches on torch, with kornia: the transformations of
:func:`common.models.augmentation.augmentation_layers`, drawn per image from a seeded
generator and applied to the whole batch at once (flips and the affine transformation in one
warp), in the training loop of :mod:`common.training.keras_fit`.
"""

from __future__ import annotations

from common.models.augmentation import check_level

def augmentation_kornia(augmentation: str = "standard") -> "TorchAugmentation | None":
    """The transformations of :func:`augmentation_layers` for torch, drawn per image:
    horizontal flip, rotation up to 0.02 turn (7.2 degrees), zoom of 0.8 to 1.2 on each
    axis and, for "strong", translation up to 10 % and contrast 0.8 to 1.2 (torchvision's
    formula: a blend with the image's mean grey); "heavy": rotation up to 0.04 turn, zoom
    in up to 1.67 and out to 0.83 on each axis, translation up to 15 %, contrast and
    saturation 0.7 to 1.3, and one image in four with a box blacked out (2 to 25 % of its
    area); "efficientnet": rotation up to 0.15 turn (54 degrees), translation up to 10 %,
    horizontal and vertical flips, contrast 0.9 to 1.1; reflected borders, bilinear
    interpolation, one affine warp per batch (flips included). ``None`` for "none"."""
    if augmentation == "none":
        return None
    check_level(augmentation)
    import kornia.augmentation as K

    if augmentation == "efficientnet":
        return TorchAugmentation(FlipAffine(0.15 * 360, translate=0.1, vertical_flip=True),
                                 K.ColorJitter(contrast=0.1, p=1.0))
    if augmentation == "heavy":
        return TorchAugmentation(
            FlipAffine(0.04 * 360, translate=0.15, scale=(1 / 1.2, 1 / 0.6)),
            K.AugmentationSequential(K.ColorJitter(contrast=0.3, saturation=0.3, p=1.0),
                                     K.RandomErasing(scale=(0.02, 0.25), p=0.25)))
    strong = augmentation == "strong"
    return TorchAugmentation(FlipAffine(0.02 * 360, translate=0.1 if strong else None),
                             K.ColorJitter(contrast=0.2, p=1.0) if strong else None)


class FlipAffine:
    """Random flips and affine transformation of a batch of (N, C, H, W) float images, in
    one warp: kornia's ``RandomHorizontalFlip`` (and ``RandomVerticalFlip``) then
    ``RandomAffine`` with reflected borders, the same draws per image (angle uniform in
    +-``degrees``, each axis' zoom uniform in ``scale``, translation uniform in
    +-``translate`` of the side), but each flip folded into the affine matrix and one
    ``kornia.geometry.transform.warp_affine`` per batch: the flip and kornia's per-module
    bookkeeping were half the batch's augmentation time on two CPU cores (``make bench``).
    The draws come from the ``generator`` given with the batch."""

    def __init__(self, degrees: float, translate: float | None = None,
                 scale: tuple[float, float] = (0.8, 1.2), vertical_flip: bool = False):
        self.degrees, self.translate = float(degrees), translate
        self.scale, self.vertical_flip = tuple(scale), vertical_flip

    def __call__(self, images, generator):
        import torch
        from kornia.geometry.transform import get_affine_matrix2d, warp_affine

        n, _, height, width = images.shape

        def uniform(low, high, *shape):
            return low + (high - low) * torch.rand(n, *shape, generator=generator)

        angle = uniform(-self.degrees, self.degrees)
        zoom = uniform(*self.scale, 2)
        shift = (torch.zeros(n, 2) if self.translate is None else
                 uniform(-self.translate, self.translate, 2) * torch.tensor([width, height]))
        center = torch.tensor([[width / 2 - 0.5, height / 2 - 0.5]]).expand(n, 2)
        matrix = get_affine_matrix2d(shift, center, zoom, angle)
        flips = [(0, width)] + ([(1, height)] if self.vertical_flip else [])
        for row, side in flips:  # x -> side - 1 - x (y for row 1), for one image in two
            flip = torch.eye(3).repeat(n, 1, 1)
            chosen = torch.rand(n, generator=generator) < 0.5
            flip[chosen, row, row], flip[chosen, row, 2] = -1.0, side - 1.0
            matrix = matrix @ flip
        matrix = matrix.to(images.device, images.dtype)
        return warp_affine(images, matrix[:, :2], (height, width), padding_mode="reflection",
                           align_corners=False)  # as RandomAffine


class TorchAugmentation:
    """A level of :func:`augmentation_kornia`: the geometric part (:class:`FlipAffine`),
    then kornia's colour and erasing modules (``colour``, or ``None``). Called with a
    batch of (N, C, H, W) float images of 0..1 pixels and a seed: the same seed gives the
    same images, and torch's global generator (dropout's) is left as it was."""

    def __init__(self, geometric: FlipAffine, colour=None):
        self.geometric, self.colour = geometric, colour

    def to(self, device):
        if self.colour is not None:
            self.colour = self.colour.to(device)
        return self

    def __call__(self, images, seed: int):
        import torch

        with torch.no_grad():
            images = self.geometric(images, torch.Generator().manual_seed(seed))
            if self.colour is None:
                return images
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self.colour(images)
