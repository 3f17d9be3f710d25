"""imagenet-clean: automated cleanup of ImageNet-style datasets (Kertész 2021) as a DVC pipeline."""

__version__ = "0.1.0"
