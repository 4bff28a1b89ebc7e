"""TFX Trainer entry point (``run_fn``) and the tf.data input pipeline over the windowed examples.

The stock TFX Trainer calls ``run_fn(fn_args)``; this module reads only plain attributes of ``fn_args`` and
imports nothing from TFX (a short, linear ``run_fn`` as in TFX's penguin example; the loop is ``training``).
The vocabulary and the windowing options come from the windowed examples artifact (``vocabulary.json`` and
``windowing_stats.json`` next to the ``Split-*`` folders).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Optional

import tensorflow as tf
import tf_keras as keras

from . import export, features
from .config import ModelConfig
from .model import SEEN_INDEX
from .training import fit
from .vocabulary import Vocabulary


def examples_root(file_pattern: str) -> str:
    """``<uri>/Split-train/*`` -> ``<uri>``."""
    return os.path.dirname(os.path.dirname(file_pattern))


def check_history_length(examples_dir: str, config: ModelConfig) -> None:
    """Refuses windowed examples made with another N than the model's (the context lists would not parse,
    or worse, the model would be exported for a length the data never had)."""
    path = os.path.join(examples_dir, features.WINDOWING_STATS_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"no {features.WINDOWING_STATS_FILE} in {examples_dir}: not the output of "
                                "HistoryWindowing")
    with tf.io.gfile.GFile(path) as f:
        windowed = int(json.load(f)["options"]["history_length"])
    if windowed != config.history_length:
        raise ValueError(f"the windowed examples in {examples_dir} hold histories of {windowed} items but the "
                         f"model is configured for history_length={config.history_length}; window the events "
                         "with the model's history length (PipelineConfig sets both from ModelConfig)")


def make_dataset(file_patterns, config: ModelConfig, vocab: Vocabulary, shuffle: bool,
                 batch_size: Optional[int] = None, validation: bool = False) -> tf.data.Dataset:
    """Batches of ``({context_movie_id: int32[B, N]}, label_index int32[B])`` from gzipped TFRecords.

    ``validation``: adds each user's already-seen movies as vocabulary indices (``SEEN_INDEX``, int32[B, S],
    0-padded) so validation recall excludes them as the Evaluator does, and removes examples whose target
    never occurs in training (index 0): the model can never rank them, so they only add noise to the
    validation loss; TFMA still counts them as misses.
    """
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no example files match {file_patterns}")
    wanted = {features.CONTEXT_MOVIE_ID, features.LABEL_MOVIE_ID}
    if config.use_ratings:
        wanted.add(features.CONTEXT_MOVIE_RATING)
    if validation:
        wanted.add(features.SEEN_MOVIE_IDS)
    spec = {k: v for k, v in features.example_feature_spec(config.history_length).items() if k in wanted}
    id_to_index = tf.constant(vocab.id_to_index(), tf.int32)
    max_id = vocab.max_movie_id

    def to_index(ids):
        return tf.gather(id_to_index, tf.clip_by_value(tf.cast(ids, tf.int32), 0, max_id))

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        label = to_index(parsed[features.LABEL_MOVIE_ID])
        inputs = {features.CONTEXT_MOVIE_ID: tf.cast(parsed[features.CONTEXT_MOVIE_ID], tf.int32)}
        if config.use_ratings:
            inputs[features.CONTEXT_MOVIE_RATING] = parsed[features.CONTEXT_MOVIE_RATING]
        if validation:
            inputs[SEEN_INDEX] = to_index(tf.sparse.to_dense(parsed[features.SEEN_MOVIE_IDS]))
            keep = label > 0
            inputs = {name: tf.boolean_mask(value, keep) for name, value in inputs.items()}
            label = tf.boolean_mask(label, keep)
        return inputs, label

    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE)
    if shuffle:
        dataset = dataset.shuffle(200_000, seed=config.seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size or config.batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def train(config: ModelConfig, vocab: Vocabulary, train_patterns, eval_patterns,
          log_dir: Optional[str] = None, base_model_dir: Optional[str] = None) -> keras.Model:
    """``fit`` on the gzipped TFRecord splits written by the windowing component."""
    return fit(config, vocab, make_dataset(train_patterns, config, vocab, shuffle=True),
               make_dataset(eval_patterns, config, vocab, shuffle=False, validation=True), log_dir,
               base_model_dir)


def run_fn(fn_args) -> None:
    """TFX Trainer hook: trains on the train split, validates on eval, exports to ``serving_model_dir``.

    Settings come from ``custom_config`` (a ModelConfig as a dict); TFX ``hyperparameters`` (e.g. from a
    Tuner), when given, override the fields they name. With a ``base_model`` (the pipeline's warm start) the
    weights start from it.
    """
    settings = dict(fn_args.custom_config or {})
    hyperparameters = getattr(fn_args, "hyperparameters", None)
    if hyperparameters:
        values = hyperparameters.get("values", hyperparameters) if isinstance(hyperparameters, dict) else {}
        settings.update({k: v for k, v in values.items() if k in ModelConfig.__dataclass_fields__})
    config = ModelConfig.from_dict(settings)
    examples_dir = examples_root(fn_args.train_files[0])
    check_history_length(examples_dir, config)
    vocab = Vocabulary.load(examples_dir)
    logging.info("training %s on %d movies (history length %d)", config.encoder, vocab.size - 1,
                 config.history_length)
    base_model = getattr(fn_args, "base_model", None)  # the latest blessed model, when the pipeline warm-starts
    model = train(config, vocab, fn_args.train_files, fn_args.eval_files, log_dir=fn_args.model_run_dir,
                  base_model_dir=base_model)
    export.export_saved_model(model, vocab, config, fn_args.serving_model_dir)
