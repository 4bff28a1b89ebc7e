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

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from . import export, features, warm_start  # noqa: E402
from .config import ModelConfig
from .model import SEEN_INDEX, RecommenderTrainer, build_recommender, compile_model  # noqa: E402
from .vocabulary import Vocabulary  # noqa: E402


def examples_root(file_pattern: str) -> str:
    """``<uri>/Split-train/*`` -> ``<uri>``."""
    return os.path.dirname(os.path.dirname(file_pattern))


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


class _EpochLog(keras.callbacks.Callback):
    """One progress line per epoch through logging (the CLI shows it; Keras' own output goes to the log)."""

    def __init__(self, epochs: int):
        super().__init__()
        self._epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        logging.getLogger("ondevice_rec.trainer").info(
            "epoch %d/%d  loss %.4f  val recall@10 %.4f", epoch + 1, self._epochs, logs.get("loss", float("nan")),
            logs.get("val_recall@10", float("nan")))


class WeightAverage:
    """Polyak averaging: an exponential moving average of the trainable weights, updated after every step.

    Validation (hence early stopping's choice and the exported model) sees the averaged weights; training
    continues from the raw ones. Keras callbacks run in list order, so ``begin`` goes before the early
    stopping callback (which records the averaged weights of its best epoch) and ``end`` after it.
    """

    def __init__(self, decay: float):
        self.decay = decay
        self.begin, self.end = _AverageIn(self), _AverageOut(self)
        self._raw = None

    def start(self, model):
        self._variables = model.trainable_variables
        self._average = [tf.Variable(v, trainable=False) for v in self._variables]
        self._steps = tf.Variable(0.0, trainable=False)
        self.update.get_concrete_function()  # trace now, not inside the first training step's callback

    @tf.function
    def update(self):
        self._steps.assign_add(1.0)
        decay = tf.minimum(self.decay, (1.0 + self._steps) / (10.0 + self._steps))  # short memory early on
        for average, variable in zip(self._average, self._variables):
            average.assign(decay * average + (1.0 - decay) * variable)

    def swap_in(self):
        if self._raw is None:
            self._raw = [v.numpy() for v in self._variables]
            for average, variable in zip(self._average, self._variables):
                variable.assign(average)

    def swap_out(self):
        if self._raw is not None:
            for raw, variable in zip(self._raw, self._variables):
                variable.assign(raw)
            self._raw = None


class _AverageIn(keras.callbacks.Callback):
    def __init__(self, average: WeightAverage):
        super().__init__()
        self._average = average

    def on_train_begin(self, logs=None):
        self._average.start(self.model)

    def on_train_batch_end(self, batch, logs=None):
        self._average.update()

    def on_test_begin(self, logs=None):
        self._average.swap_in()


class _AverageOut(keras.callbacks.Callback):
    def __init__(self, average: WeightAverage):
        super().__init__()
        self._average = average

    def on_epoch_end(self, epoch, logs=None):
        self._average.swap_out()


def fit(config: ModelConfig, vocab: Vocabulary, train_data: tf.data.Dataset, eval_data: tf.data.Dataset,
        log_dir: Optional[str] = None, base_model_dir: Optional[str] = None) -> keras.Model:
    """Builds and fits the model; keeps the weights of the epoch with the best eval recall@10 (history
    items excluded; ``eval_data`` may carry the rest of each user's seen movies as ``SEEN_INDEX``).

    ``base_model_dir``: an exported model to warm-start from (skipped, with a warning, if it does not fit).
    """
    recommender = build_recommender(config, vocab)
    model = recommender.model
    if base_model_dir:
        try:
            warm_start.warm_start(model, vocab, base_model_dir)
        except ValueError as e:
            logging.getLogger("ondevice_rec.trainer").warning("warm start skipped: %s", e)
    counts = np.array([0] + [m.count for m in vocab.movies], np.float64)
    fitted = compile_model(RecommenderTrainer(recommender, config, counts), config)
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_recall@10", mode="max",
                                               patience=config.early_stopping_patience,
                                               restore_best_weights=True), _EpochLog(config.epochs)]
    if config.weight_average_decay:
        average = WeightAverage(config.weight_average_decay)
        callbacks = [average.begin] + callbacks + [average.end]
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))
    steps = config.steps_per_epoch or None
    if steps:
        train_data = train_data.repeat()
    fitted.fit(train_data, epochs=config.epochs, steps_per_epoch=steps, validation_data=eval_data,
               callbacks=callbacks, verbose=0)
    model.history = fitted.history
    return model


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
    vocab = Vocabulary.load(examples_root(fn_args.train_files[0]))
    logging.info("training %s on %d movies (history length %d)", config.encoder, vocab.size - 1,
                 config.history_length)
    base_model = getattr(fn_args, "base_model", None)  # the latest blessed model, when the pipeline warm-starts
    model = train(config, vocab, fn_args.train_files, fn_args.eval_files, log_dir=fn_args.model_run_dir,
                  base_model_dir=base_model)
    export.export_saved_model(model, vocab, config, fn_args.serving_model_dir)
