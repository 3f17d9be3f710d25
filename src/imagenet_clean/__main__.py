"""``python -m imagenet_clean``: the ``imagenet-clean`` command (what the launcher runs under torchrun)."""
from .cli import main

if __name__ == "__main__":
    main()
