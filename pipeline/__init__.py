"""The pipeline definition (``pipeline.py``), its typed config (``config.py``) and local runners."""
