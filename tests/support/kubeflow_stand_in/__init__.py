"""Test support, not shipped in the wheel: a local stand-in for the Kubeflow image (``image``) and a launcher that
executes a compiled pipeline spec task by task as KFP's launcher would (``local_launcher``). On ``sys.path``
through pytest's ``pythonpath`` setting (pyproject.toml)."""
