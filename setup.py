"""Packaging for ondevice-rec.

The repository root *is* the ``ondevice_rec`` package, so the folders the design asks for (``pipeline/``,
``components/``, ``modules/``, ``data/``, ``kubeflow/``) are importable as ``ondevice_rec.pipeline`` and so on.
Beam workers install the same code with ``--setup_file ./setup.py``.
"""

import os

import setuptools

HERE = os.path.dirname(os.path.abspath(__file__))
SUBPACKAGES = ["cli", "pipeline", "components", "modules", "data", "kubeflow", "benchmarks", "demo"]


def _packages():
    found = ["ondevice_rec"]
    for top in SUBPACKAGES:
        for root, dirs, files in os.walk(os.path.join(HERE, top)):
            dirs[:] = [d for d in dirs if not d.startswith((".", "__")) and d != "node_modules"]
            if "__init__.py" in files:
                rel = os.path.relpath(root, HERE)
                found.append("ondevice_rec." + rel.replace(os.sep, "."))
    return found


setuptools.setup(
    name="ondevice-rec",
    version="0.1.0",
    description="TFX pipeline that learns a next-item recommender from activity logs and publishes it as an on-device TFLite model",
    python_requires=">=3.9",
    package_dir={"ondevice_rec": "."},
    packages=_packages(),
    # The demo's web runtime (demo/node_modules) is installed by `npm ci` in demo/, not packaged.
    package_data={"ondevice_rec": ["components/event_example_gen/*.pbtxt", "components/tflite_pusher/*.json",
                                   "demo/static/*", "demo/package.json", "demo/package-lock.json"]},
    # The pinned TFX stack is installed from constraints.txt first (docs/operations.md, "Why these pins"); these are the direct needs.
    install_requires=[
        "tfx>=1.16,<1.17",
        "tensorflow>=2.16,<2.17",
        "tf-keras>=2.16,<2.17",
        "tensorflow-model-analysis>=0.47,<0.48",
        "apache-beam>=2.59,<2.60",
        "ai-edge-litert>=2.3,<2.4",
        "numpy>=1.26,<2",
        "matplotlib>=3.8",
        "jsonschema>=4",
    ],
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3.5"]},
    entry_points={"console_scripts": ["ondevice-rec=ondevice_rec.cli:main",
                                     "ondevice-rec-beam-worker=ondevice_rec.pipeline.beam_worker:main"]},
)
