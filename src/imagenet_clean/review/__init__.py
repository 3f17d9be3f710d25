"""Human review of the cleanup's changes: the ``imagenet-clean review`` web app and ``metrics/review.json``.

``data`` pages a split's changes and gathers one change's evidence (every
model's top-5, rules, CAM scores, examples) and writes verdicts; ``render``
draws images with their boxes and CAM heatmaps; ``server`` is the Flask app;
``export`` writes the read-only HTML report;
``metrics`` measures the machine against the reviewers' verdicts. The verdicts
file itself, and how the clean stage applies it, is
:mod:`imagenet_clean.cleanup.verdicts`.
"""
