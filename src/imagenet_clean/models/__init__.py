"""Models: the factory, weight sources, training, cross-validation and prediction."""


def timm_registry():
    """The ``timm`` module, with this package's embedded architectures (``digits_*``) registered."""
    import timm

    from . import embedded  # noqa: F401  (registers every digits_* architecture: digits_vgg, digits_vgg_wide, digits_resnet, ...)

    return timm
