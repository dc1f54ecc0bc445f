"""Models, per-sample losses, batching, augmentation and the one fit loop."""
