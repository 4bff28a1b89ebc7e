"""ondevice-rec: a TFX pipeline that trains a next-movie recommender and ships it as TFLite.

The repository root is the ``ondevice_rec`` package (see ``setup.py``): ``pipeline/``, ``components/``,
``modules/``, ``data/`` and ``kubeflow/`` are its sub-packages.
"""

__version__ = "0.1.0"
