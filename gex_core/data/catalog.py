"""Names the config may use, kept free of JAX so Snakemake parses the workflow fast."""

from __future__ import annotations

MODELS = ("cnn", "mlp", "vgg", "resnet18")
BN_MODELS = ("vgg", "resnet18")

AUGMENTATIONS = ("none", "crop", "crop_flip")
# "auto" per data set, as the research code: crop and flip for natural images, no flip
# for MNIST-like data and SVHN; nothing for the 8x8 scikit-learn digits and user data.
AUTO_AUGMENTATION = {
    "digits": "none",
    "mnist": "crop",
    "fashion_mnist": "crop",
    "svhn": "crop",
    "cifar10": "crop_flip",
    "cifar100": "crop_flip",
    "npz": "none",
    "folder": "none",
}


def resolve_augmentation(mode: str, dataset: str) -> str:
    """The concrete augmentation of a config value ("auto" or one of AUGMENTATIONS)."""
    if mode == "auto":
        return AUTO_AUGMENTATION[dataset]
    if mode not in AUGMENTATIONS:
        raise ValueError(
            f"unknown augmentation {mode!r}; known: auto, {', '.join(AUGMENTATIONS)}"
        )
    return mode
