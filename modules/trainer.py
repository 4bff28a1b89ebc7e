"""TFX Trainer entry point (``run_fn``) and the tf.data input pipeline.

The stock TFX Trainer calls ``run_fn(fn_args)``; this module reads only plain attributes of ``fn_args`` and
imports nothing from TFX. The vocabulary comes from the windowed examples artifact (``vocabulary.json`` next
to the ``Split-*`` folders).
"""

from __future__ import annotations

import logging
import os
from typing import Optional

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from . import export, features  # noqa: E402
from .config import ModelConfig
from .model import build_model, compile_model  # noqa: E402
from .vocabulary import Vocabulary  # noqa: E402


def examples_root(file_pattern: str) -> str:
    """``<uri>/Split-train/*`` -> ``<uri>``."""
    return os.path.dirname(os.path.dirname(file_pattern))


def make_dataset(file_patterns, config: ModelConfig, vocab: Vocabulary, shuffle: bool,
                 batch_size: Optional[int] = None, drop_unknown_labels: bool = False) -> tf.data.Dataset:
    """Batches of ``({context_movie_id: int32[B, N]}, label_index int32[B])`` from gzipped TFRecords.

    ``drop_unknown_labels`` removes examples whose target never occurs in training (index 0): the model can
    never rank them, so they only add noise to validation loss; TFMA still counts them as misses.
    """
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no example files match {file_patterns}")
    spec = {k: v for k, v in features.example_feature_spec(config.history_length).items()
            if k in (features.CONTEXT_MOVIE_ID, features.LABEL_MOVIE_ID)}
    id_to_index = tf.constant(vocab.id_to_index(), tf.int32)
    max_id = vocab.max_movie_id

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        label = tf.cast(parsed[features.LABEL_MOVIE_ID], tf.int32)
        label = tf.gather(id_to_index, tf.clip_by_value(label, 0, max_id))
        return {features.CONTEXT_MOVIE_ID: tf.cast(parsed[features.CONTEXT_MOVIE_ID], tf.int32)}, label

    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE)
    if shuffle:
        dataset = dataset.shuffle(200_000, seed=config.seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size or config.batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    if drop_unknown_labels:
        dataset = dataset.unbatch().filter(lambda x, y: y > 0).batch(batch_size or config.batch_size)
    return dataset.prefetch(tf.data.AUTOTUNE)


def train(config: ModelConfig, vocab: Vocabulary, train_patterns, eval_patterns,
          log_dir: Optional[str] = None) -> keras.Model:
    """Builds and fits the model; keeps the weights of the epoch with the best eval recall@10."""
    model = compile_model(build_model(config, vocab), config)
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_recall@10", mode="max",
                                               patience=config.early_stopping_patience,
                                               restore_best_weights=True)]
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))
    model.fit(make_dataset(train_patterns, config, vocab, shuffle=True), epochs=config.epochs,
              validation_data=make_dataset(eval_patterns, config, vocab, shuffle=False, drop_unknown_labels=True),
              callbacks=callbacks, verbose=2)
    return model


def run_fn(fn_args) -> None:
    """TFX Trainer hook: trains on the train split, validates on eval, exports to ``serving_model_dir``."""
    config = ModelConfig.from_dict(dict(fn_args.custom_config or {}))
    vocab = Vocabulary.load(examples_root(fn_args.train_files[0]))
    logging.info("training %s on %d movies (history length %d)", config.encoder, vocab.size - 1,
                 config.history_length)
    model = train(config, vocab, fn_args.train_files, fn_args.eval_files, log_dir=fn_args.model_run_dir)
    export.export_saved_model(model, vocab, config, fn_args.serving_model_dir)
