"""The ML stages: training data, the U-Net, ``train`` and ``inference``.

TensorFlow and Keras are imported only inside functions (``data``, ``train``, ``inference``) or by
``model``, which those functions import lazily, so that the CLI starts without them.
"""
