"""The benchmarks' data: the pipeline's own data stages (ExampleGen to HistoryWindowing on BeamDagRunner) and
the Trainer's own input pipeline, so benchmark figures are pipeline figures.

``WindowedSplit(data_dir, work_dir, model_config)`` windows ``data_dir`` exactly as ``ondevice-rec run`` with
that model configuration would (``PipelineConfig`` derives the history length and the train stride from it);
the runs share one MLMD store under ``work_dir``, so the event stages are computed once and every other
history length or stride only re-runs HistoryWindowing.
"""

from __future__ import annotations

import os
from typing import Dict, List

import numpy as np

from ondevice_rec.modules import baselines, features
from ondevice_rec.modules.config import ModelConfig
from ondevice_rec.modules.vocabulary import Vocabulary
from ondevice_rec.pipeline.config import PipelineConfig
from ondevice_rec.pipeline.nodes import Nodes


def split_pattern(examples_uri: str, split: str) -> str:
    return os.path.join(examples_uri, f"Split-{split}", "*")


def read_records(examples_uri: str, split: str) -> List[bytes]:
    """The serialized examples of one split, in file order."""
    import tensorflow as tf
    files = sorted(tf.io.gfile.glob(split_pattern(examples_uri, split)))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


class WindowedSplit:
    """One windowing of a dataset by the pipeline's HistoryWindowing, with the Trainer's datasets on it."""

    def __init__(self, data_dir: str, work_dir: str, model: ModelConfig, beam_args=()):
        from ondevice_rec.pipeline.runner import run_data_stages
        self.config = PipelineConfig(data_dir=data_dir, output_dir=work_dir, model=model, beam_args=list(beam_args))
        self.examples_uri = run_data_stages(self.config)[Nodes.WINDOWING]
        self.vocab = Vocabulary.load(self.examples_uri)
        self._examples: Dict[str, List[dict]] = {}

    @property
    def stride(self) -> int:
        return self.config.windowing.stride

    def examples(self, split: str) -> List[dict]:
        """The examples of ``split`` as dicts of Python values (eval and test: one per user)."""
        if split not in self._examples:
            self._examples[split] = baselines.read_examples(split_pattern(self.examples_uri, split))
        return self._examples[split]

    def dataset(self, split: str, config: ModelConfig, shuffle: bool):
        """``trainer.make_dataset`` on the split (eval and test as validation data: seen movies excluded)."""
        from ondevice_rec.modules import trainer
        return trainer.make_dataset([split_pattern(self.examples_uri, split)], config, self.vocab, shuffle=shuffle,
                                    validation=split != "train")

    def targets(self, split: str) -> np.ndarray:
        return np.array([e[features.LABEL_MOVIE_ID] for e in self.examples(split)], np.int64)

    def popular_ids(self) -> List[int]:
        return [m.movie_id for m in self.vocab.movies]

    def baselines(self, split: str = "test") -> Dict[str, Dict[str, float]]:
        """Popularity and the Markov chains on the same split, from the training events (eval examples'
        seen movies: each user's events before the eval target)."""
        train_sequences = [e[features.SEEN_MOVIE_IDS] for e in self.examples("eval")]
        examples = self.examples(split)
        return {"popularity": baselines.popularity_baseline(self.popular_ids(), examples),
                "markov (last item)": baselines.markov_baseline(self.popular_ids(), train_sequences, examples, 1),
                "markov (last 3 items)": baselines.markov_baseline(self.popular_ids(), train_sequences, examples, 3)}
