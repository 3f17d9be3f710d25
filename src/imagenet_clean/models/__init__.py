"""Models: the factory, weight sources, training, cross-validation and prediction."""


def timm_registry():
    """The ``timm`` module, with this package's embedded architectures (``digits_*``) registered."""
    import timm

    from . import embedded  # noqa: F401  (registers digits_vgg, digits_resnet, digits_squeeze, digits_mbnet, digits_dense)

    return timm
