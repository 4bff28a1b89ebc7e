"""The benchmarks' data: the pipeline's own data stages (ExampleGen to Transform on BeamDagRunner) and the
Trainer's own input pipeline, so benchmark figures are pipeline figures.

``WindowedSplit(data_dir, work_dir, model_config)`` windows and transforms ``data_dir`` exactly as
``ondevice-rec run`` with that model configuration would (``PipelineConfig`` derives the history length and
the train stride from it); the runs share one MLMD store under ``work_dir``, so the event stages are computed
once and every other history length or stride only re-runs HistoryWindowing and Transform.
"""

from __future__ import annotations

import functools
import os
import tempfile
from typing import Dict, List

import numpy as np

from ondevice_rec.modules import baselines, features
from ondevice_rec.modules.config import ModelConfig
from ondevice_rec.modules.vocabulary import Vocabulary
from ondevice_rec.pipeline.config import PipelineConfig
from ondevice_rec.pipeline.nodes import Nodes


def temporary_work_dir(prefix: str):
    """Decorates a benchmark taking ``work_dir=""``: without one it runs in a new temporary folder, deleted when
    it returns (its data stages and models are hundreds of MB; pass a work folder to keep them)."""
    def decorate(run):
        @functools.wraps(run)
        def run_in_a_work_dir(*args, work_dir: str = "", **kwargs):
            if work_dir:
                return run(*args, work_dir=work_dir, **kwargs)
            with tempfile.TemporaryDirectory(prefix=prefix) as work:
                return run(*args, work_dir=work, **kwargs)
        return run_in_a_work_dir
    return decorate


class WindowedSplit:
    """One windowing of a dataset by the pipeline's HistoryWindowing and Transform, with the Trainer's datasets
    on it (``examples_uri``: the transformed examples, vocabulary indices)."""

    def __init__(self, data_dir: str, work_dir: str, model: ModelConfig, beam_args=(), events=None):
        import tensorflow_transform as tft
        from ondevice_rec.pipeline.runner import TRANSFORM_GRAPH, run_data_stages
        self.config = PipelineConfig(data_dir=data_dir, output_dir=work_dir, model=model, beam_args=list(beam_args),
                                     events=events)
        outputs = run_data_stages(self.config)
        self.examples_uri = outputs[Nodes.TRANSFORM]
        self.windowed_uri = outputs[Nodes.WINDOWING]
        self.vocab = Vocabulary.from_transform_output(tft.TFTransformOutput(outputs[TRANSFORM_GRAPH]))
        self._examples: Dict[str, List[dict]] = {}

    @property
    def stride(self) -> int:
        return self.config.windowing.stride

    def examples(self, split: str) -> List[dict]:
        """The examples of ``split`` as dicts of Python values (eval and test: one per user)."""
        if split not in self._examples:
            self._examples[split] = baselines.read_examples(features.split_files(self.examples_uri, split))
        return self._examples[split]

    def train(self, config: ModelConfig):
        """The Trainer's ``trainer.train`` on this split's transformed train and eval examples."""
        from ondevice_rec.modules import trainer
        return trainer.train(config, self.vocab, [features.split_files(self.examples_uri, "train")],
                             [features.split_files(self.examples_uri, "eval")])

    def targets(self, split: str) -> np.ndarray:
        return np.array([e[features.LABEL_INDEX] for e in self.examples(split)], np.int64)

    def popular_ids(self) -> List[int]:
        """Vocabulary indices, most frequent first (the index order)."""
        return list(range(1, self.vocab.size))

    def baselines(self, split: str = "test") -> Dict[str, Dict[str, float]]:
        """Popularity and the Markov chains on the same split (``baselines.split_baselines``)."""
        return baselines.split_baselines(self.popular_ids(), self.examples(split))
