"""ondevice-rec: a TFX pipeline that learns a next-item recommender from activity logs and ships it as an on-device TFLite model.

The repository root is the ``ondevice_rec`` package (see ``setup.py``): ``pipeline/``, ``components/``,
``modules/``, ``data/`` and ``kubeflow/`` are its sub-packages.
"""

__version__ = "0.1.0"

import os

# Before TensorFlow is first imported anywhere in the package (this module always loads first): Keras 3
# SavedModels break the TFLite converter on TF 2.16, so the models are built with tf_keras.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
