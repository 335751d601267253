"""Golden-data checks against the official Im2Hands networks (``im2hands check-official``).

A golden folder (layout of ``tests/data/golden/official``) holds inputs, the outputs of the official
networks, the state-dict key manifests and the parameters of the rule that made the weights. The checks
rebuild those weights with :mod:`im2hands.official.weights`, run our code and compare every array.
"""
