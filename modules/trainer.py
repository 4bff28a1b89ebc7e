"""TFX Trainer entry point (``run_fn``) and the tf.data input pipeline over the transformed examples.

The stock TFX Trainer calls ``run_fn(fn_args)``; this module reads only plain attributes of ``fn_args`` and
imports nothing from TFX (a short, linear ``run_fn`` as in TFX's penguin example; the loop is ``training``).
The examples hold vocabulary indices (the Transform component's output); the vocabulary, item features and
the history length come from the ``transform_graph`` channel (``tft.TFTransformOutput``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Optional

import tensorflow as tf
import tf_keras as keras

from . import export, features
from .config import ModelConfig
from .model import SEEN_INDEX
from .training import fit
from .vocabulary import Vocabulary


def check_history_length(transformed_spec, config: ModelConfig) -> None:
    """Refuses examples made with another N than the model's (the context lists would not parse, or worse,
    the model would be exported for a length the data never had). ``transformed_spec``: the transformed
    examples' feature spec."""
    windowed = int(transformed_spec[features.CONTEXT_INDEX].shape[0])
    if windowed != config.history_length:
        raise ValueError(f"the examples hold histories of {windowed} items but the model is configured for "
                         f"history_length={config.history_length}; window the events with the model's history "
                         "length (PipelineConfig sets both from ModelConfig)")
    earlier = transformed_spec.get(features.EARLIER_INDEX)
    earlier = int(earlier.shape[0]) if earlier is not None else 0
    if earlier != config.personal_history:
        raise ValueError(f"the examples hold {earlier} earlier items each but the model is configured for "
                         f"personal_history={config.personal_history}; window the events with the model's "
                         "personal_history (PipelineConfig sets both from ModelConfig)")


# Examples shuffled per epoch; a split up to this size is shuffled whole, and read in a canonical order first.
SHUFFLE_BUFFER = 200_000


def canonical_records(files, limit: int) -> Optional[list]:
    """The split's serialized examples sorted by a digest of their content, or None above ``limit`` records.

    Which shard a record lands in and where depends on the Beam engine (DirectRunner and Flink write the same
    records in other orders, and even encode a record's features in another order), and a seeded shuffle of
    another order trains another model. Sorting by the digest of the deterministic encoding makes the order, and
    so the model, a function of the records alone. Records are re-encoded deterministically (map keys sorted).
    """
    records = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
        records.append(record)
        if len(records) > limit:
            return None
    canonical = [tf.train.Example.FromString(r).SerializeToString(deterministic=True) for r in records]
    return sorted(canonical, key=lambda r: hashlib.blake2b(r, digest_size=8).digest())


def make_dataset(file_patterns, config: ModelConfig, shuffle: bool, batch_size: Optional[int] = None,
                 validation: bool = False, vocabulary_size: Optional[int] = None) -> tf.data.Dataset:
    """Batches of ``({context_index: int32[B, N]}, label_index int32[B])`` from gzipped transformed TFRecords.

    ``validation``: the first ``config.validation_users`` examples (one per user), with each user's already-seen
    items (``SEEN_INDEX``, int32[B, S], 0-padded) so validation recall excludes them as the Evaluator does,
    and without examples whose target never occurs in training
    (index 0): the model can never rank them, so they only add noise to the validation loss; TFMA still
    counts them as misses.
    """
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no example files match {file_patterns}")
    wanted = {features.CONTEXT_INDEX, features.LABEL_INDEX}
    if config.use_ratings:
        wanted.add(features.CONTEXT_RATING)
    if config.personal_history:
        wanted.add(features.EARLIER_INDEX)
    if validation:
        wanted.add(features.SEEN_INDEX)
    elif config.user_balance:
        wanted.add(features.USER_TRAIN_EXAMPLES)
    spec = {k: v for k, v in features.transformed_feature_spec(config.history_length, config.personal_history
                                                               ).items() if k in wanted}

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        label = tf.cast(parsed[features.LABEL_INDEX], tf.int32)
        inputs = {features.CONTEXT_INDEX: tf.cast(parsed[features.CONTEXT_INDEX], tf.int32)}
        if config.use_ratings:
            inputs[features.CONTEXT_RATING] = parsed[features.CONTEXT_RATING]
        if features.EARLIER_INDEX in parsed:
            inputs[features.EARLIER_INDEX] = tf.cast(parsed[features.EARLIER_INDEX], tf.int32)
        if features.USER_TRAIN_EXAMPLES in parsed:
            inputs[features.USER_TRAIN_EXAMPLES] = tf.cast(parsed[features.USER_TRAIN_EXAMPLES], tf.float32)
        if validation:
            inputs[SEEN_INDEX] = tf.cast(tf.sparse.to_dense(parsed[features.SEEN_INDEX]), tf.int32)
            keep = label > 0
            inputs = {name: tf.boolean_mask(value, keep) for name, value in inputs.items()}
            label = tf.boolean_mask(label, keep)
        return inputs, label

    records = canonical_records(files, SHUFFLE_BUFFER)
    if records is not None:
        dataset = tf.data.Dataset.from_tensor_slices(tf.constant(records, dtype=tf.string))
    else:  # larger than the shuffle buffer: streamed in file order (the engine's sharding then shapes the order)
        dataset = tf.data.TFRecordDataset(files, compression_type="GZIP",
                                          num_parallel_reads=None if validation else tf.data.AUTOTUNE)
    if validation and config.validation_users:
        dataset = dataset.take(config.validation_users)
    if shuffle:
        dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=config.seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size or config.batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def train(config: ModelConfig, vocab: Vocabulary, train_patterns, eval_patterns,
          log_dir: Optional[str] = None, base_model_dir: Optional[str] = None) -> keras.Model:
    """``fit`` on the gzipped transformed TFRecord splits."""
    # The shuffle's seed pairs the op seed with the global one: set here, the order (and so the model) is the
    # same in every process. Unset, it depended on what ran before in the process: the executed Kubeflow
    # spec's model and an in-process local run's differed (top-10 overlap 0.61) when another test had set it.
    keras.utils.set_random_seed(config.seed)
    reads = config.derive_from_data(vocab.size - 1, vocab.training_events)[0]  # e.g. the earlier items, or not
    return fit(config, vocab, make_dataset(train_patterns, reads, shuffle=True),
               make_dataset(eval_patterns, reads, shuffle=False, validation=True), log_dir, base_model_dir,
               held_out_data=make_dataset(eval_patterns, reads, shuffle=False))


def transform_output_path(fn_args) -> str:
    path = getattr(fn_args, "transform_output", None) or getattr(fn_args, "transform_graph_path", None)
    if not path:
        raise ValueError("the Trainer needs the Transform component's transform_graph (vocabularies)")
    return path


def run_fn(fn_args) -> None:
    """TFX Trainer hook: trains on the train split, validates on eval, exports to ``serving_model_dir``.

    Settings come from ``custom_config`` (a ModelConfig as a dict); TFX ``hyperparameters`` (e.g. from a
    Tuner), when given, override the fields they name. With a ``base_model`` (the pipeline's warm start) the
    weights start from it (rows matched by item key).
    """
    import tensorflow_transform as tft
    settings = dict(fn_args.custom_config or {})
    hyperparameters = getattr(fn_args, "hyperparameters", None)
    if hyperparameters:
        values = hyperparameters.get("values", hyperparameters) if isinstance(hyperparameters, dict) else {}
        settings.update({k: v for k, v in values.items() if k in ModelConfig.__dataclass_fields__})
    config = ModelConfig.from_dict(settings)
    transform_output = tft.TFTransformOutput(transform_output_path(fn_args))
    check_history_length(transform_output.transformed_feature_spec(), config)
    vocab = Vocabulary.from_transform_output(transform_output)
    if vocab.size < 2:
        raise ValueError("the item vocabulary is empty: no item reaches --min-item-count in the training split")
    logging.info("training %s on %d items (history length %d)", config.encoder, vocab.size - 1,
                 config.history_length)
    base_model = getattr(fn_args, "base_model", None)  # the latest blessed model, when the pipeline warm-starts
    model = train(config, vocab, fn_args.train_files, fn_args.eval_files, log_dir=fn_args.model_run_dir,
                  base_model_dir=base_model)
    write_training_summary(model, fn_args.model_run_dir)
    export.export_saved_model(model, vocab, config, fn_args.serving_model_dir)


def write_training_summary(model: keras.Model, model_run_dir: str) -> None:
    """``TRAINING_SUMMARY_FILE`` in the ModelRun artifact: how training ended (epochs run, why it stopped, the
    kept epoch, seconds per epoch) and the per-epoch loss and eval recall@10 (the training curve)."""
    history = getattr(model, "history", None)
    epochs = history.history if history else {}
    curve = {name: [round(float(v), 6) for v in values] for name, values in epochs.items()}
    summary = {**getattr(model, "training_summary", {}), "history": curve}
    tf.io.gfile.makedirs(model_run_dir)
    with tf.io.gfile.GFile(f"{model_run_dir}/{features.TRAINING_SUMMARY_FILE}", "w") as f:
        f.write(json.dumps(summary, indent=2))
