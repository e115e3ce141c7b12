"""sslkit vision plugin: SimCLR, BYOL, DINO and MAE with ResNet/ViT encoders, batched on-device
augmentations, image-folder and WebDataset readers, and a nearest-neighbour grid evaluator."""

__version__ = "0.1.0"
