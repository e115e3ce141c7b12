"""sslkit vision plugin: SimCLR with ResNet encoders and batched on-device augmentations."""

__version__ = "0.1.0"
