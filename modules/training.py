"""The training loop: full or sampled softmax with a loss at every position (or the last), validation as
the Evaluator ranks, early stopping on eval recall@10 and Polyak weight averaging."""

from __future__ import annotations

import logging
import time
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from . import features, personal, successors, warm_start
from .config import ModelConfig
from .model import SEEN_INDEX, Recommender, build_recommender, exclude_seen, personal_state_layer, successor_layer
from . import ranking_metrics
from .ranking_metrics import GATE
from .vocabulary import Vocabulary


def delete_history_items(inputs: dict, rate: float) -> dict:
    """``inputs`` with each history item deleted with probability ``rate`` and the rest closed up (most recent
    first, padding after), their ratings with them."""
    context = inputs[features.CONTEXT_INDEX]
    n = tf.shape(context)[1]
    positions = tf.range(n)[tf.newaxis, :]
    keep = (context > features.PADDING_ID) & (tf.random.uniform(tf.shape(context)) >= rate)
    order = tf.argsort(tf.where(keep, positions, positions + n), axis=1, stable=True)
    filled = positions < tf.reduce_sum(tf.cast(keep, tf.int32), axis=1, keepdims=True)
    out = dict(inputs)
    for name in (features.CONTEXT_INDEX, features.CONTEXT_RATING):
        if name in inputs:
            moved = tf.gather(inputs[name], order, batch_dims=1)
            out[name] = tf.where(filled, moved, tf.zeros_like(moved))
    return out


class RecommenderTrainer(keras.Model):
    """Trains a recommender; validates with the full scores of the serving model.

    ``loss_positions="all"``: every position of every history window is a training query whose target is
    the next item (the window's label for the last position), as SASRec trains; padding positions and
    targets outside the vocabulary are skipped. ``"last"``: only the window's label.

    ``softmax="sampled"``: negatives from a unigram sampler over the training counts, and
    ``tf.nn.sampled_softmax_loss`` subtracts ``log Q(item)`` from every logit, so popular items are not
    over-penalised. Training and the exported model share the weights of ``model``.
    """

    def __init__(self, recommender: Recommender, config: ModelConfig, counts: Optional[np.ndarray] = None):
        super().__init__()
        self.model = recommender.model
        self.sequence = recommender.sequence
        self.scores_layer = recommender.model.get_layer("scores")
        self._all_positions = config.loss_at_every_position()
        # Positions whose target no earlier window holds: the last `stride` (see ModelConfig.loss_once_per_target).
        self._fresh = None
        if config.loss_once_per_target and self._all_positions:
            n = config.history_length
            self._fresh = tf.range(n) >= n - config.default_train_stride()
        self._history_dropout = config.history_dropout
        self._user_balance = config.user_balance
        self._sampled = config.softmax == "sampled"
        if self._sampled:
            if counts is None:
                raise ValueError("sampled softmax needs the training counts")
            self._unigrams = [float(c) for c in counts]
            self._num_sampled = int(min(config.num_sampled, int(np.count_nonzero(counts))))
        self._loss = keras.metrics.Mean(name="loss")

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    def _queries_and_targets(self, inputs, labels):
        """The training queries, their targets and their weights (None: all equal)."""
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        inputs = dict(inputs)
        examples = inputs.pop(features.USER_TRAIN_EXAMPLES, None)
        weights = None
        if self._user_balance and examples is not None:
            weights = tf.pow(tf.maximum(examples, 1.0), -self._user_balance)  # [B]: one a window
        # The user's first window has padding in its oldest slot (told before any deletion pads others).
        first_window = tf.equal(inputs[features.CONTEXT_INDEX][:, -1:], features.PADDING_ID)
        if self._history_dropout:
            inputs = delete_history_items(inputs, self._history_dropout)
        queries, index = self.sequence(inputs, training=True)
        if self._all_positions:
            targets = tf.concat([index[:, 1:], labels[:, tf.newaxis]], axis=1)
            valid = tf.logical_and(index > 0, targets > 0)
            if self._fresh is not None:
                valid &= self._fresh[tf.newaxis, :] | first_window
            if weights is not None:
                weights = tf.boolean_mask(tf.broadcast_to(weights[:, tf.newaxis], tf.shape(targets)), valid)
            return tf.boolean_mask(queries, valid), tf.boolean_mask(targets, valid), weights
        queries, valid = queries[:, -1], labels > 0
        if weights is not None:
            weights = tf.boolean_mask(weights, valid)
        return tf.boolean_mask(queries, valid), tf.boolean_mask(labels, valid), weights

    def train_step(self, data):
        inputs, labels = data
        with tf.GradientTape() as tape:
            queries, targets, weights = self._queries_and_targets(inputs, labels)
            if self._sampled:
                targets = tf.cast(targets[:, tf.newaxis], tf.int64)
                sampled = tf.random.fixed_unigram_candidate_sampler(
                    true_classes=targets, num_true=1, num_sampled=self._num_sampled, unique=True,
                    range_max=len(self._unigrams), unigrams=self._unigrams)
                losses = tf.nn.sampled_softmax_loss(
                    self.scores_layer.label_weights(), self.scores_layer.label_bias, targets, queries,
                    self._num_sampled, len(self._unigrams), sampled_values=sampled, remove_accidental_hits=True)
            else:
                losses = tf.nn.sparse_softmax_cross_entropy_with_logits(targets, self.scores_layer(queries))
            loss = tf.reduce_mean(losses) if weights is None else (
                tf.reduce_sum(weights * losses) / tf.maximum(tf.reduce_sum(weights), 1e-12))
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self._loss.update_state(loss)
        return {"loss": self._loss.result()}

    def test_step(self, data):
        """Validation as the Evaluator scores: the history items (and ``SEEN_INDEX``, when given) are
        excluded from the ranking."""
        inputs, labels = data
        inputs = dict(inputs)
        seen = inputs.pop(SEEN_INDEX, None)
        scores = exclude_seen(self.model(inputs, training=False), inputs[features.CONTEXT_INDEX], seen)
        self.compiled_loss(labels, scores)
        self.compiled_metrics.update_state(labels, scores)
        return {m.name: m.result() for m in self.metrics}

    @property
    def metrics(self):
        return [self._loss] + super().metrics


def compile_model(model: keras.Model, config: ModelConfig) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[m.keras() for m in ranking_metrics.METRICS])
    return model


class StopRule(keras.callbacks.Callback):
    """Early stopping on eval recall@10 with a patience, an epoch cap and a time budget; keeps the weights of
    the best epoch, and logs one progress line per epoch (its time and an upper bound of the time left).

    The time budget is checked after every step: the epoch in progress ends there (and is validated), and
    no epoch starts that would end past the budget at the mean epoch time so far. ``summary`` says how
    training ended (the Trainer logs it and writes it next to the model).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self._monitor = f"val_{GATE.name}"
        self._patience, self._epochs = config.early_stopping_patience, config.epochs
        self._budget = config.max_train_minutes * 60.0
        self.summary: dict = {}

    def on_train_begin(self, logs=None):
        self._start, self._epoch_seconds = time.monotonic(), []
        self._epoch_start = self._start
        self._best, self._best_epoch, self._weights, self._wait = -np.inf, 0, None, 0
        self._reason = f"the epoch cap ({self._epochs})"

    def on_train_batch_end(self, batch, logs=None):
        if self._budget and time.monotonic() - self._start > self._budget:
            self.model.stop_training = True
            self._reason = f"the time budget ({self._budget / 60:g} min, mid-epoch)"

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        # Wall time since the previous epoch ended: whatever fit does between epochs counts too, so the
        # time left is not underestimated.
        now = time.monotonic()
        self._epoch_seconds.append(now - self._epoch_start)
        self._epoch_start = now
        value = float(logs.get(self._monitor, np.nan))
        if value > self._best:
            self._best, self._best_epoch, self._wait = value, epoch + 1, 0
            self._weights = self.model.get_weights()
        else:
            self._wait += 1
        # The first epoch also traces the step functions (most of its time on a small log: docs/results.md, "Figures behind code comments"): later
        # epochs' mean, once known.
        elapsed = time.monotonic() - self._start
        per_epoch = float(np.mean(self._epoch_seconds[1:] or self._epoch_seconds))
        left = self._epochs - epoch - 1
        if self._wait >= self._patience:
            self.model.stop_training = True
            self._reason = f"no better eval {GATE.name} in {self._patience} epochs (patience)"
        elif self._budget and left and elapsed + per_epoch > self._budget and not self.model.stop_training:
            self.model.stop_training = True
            self._reason = f"the time budget ({self._budget / 60:g} min: another epoch would pass it)"
        if self.model.stop_training:
            left = 0
        elif self._budget:
            left = min(left, int((self._budget - elapsed) // per_epoch))
        logging.getLogger("ondevice_rec.trainer").info(
            "epoch %d/%d  loss %.4f  val %s %.4f  (best %.4f, epoch %d)  %.0f s  eta <= %s", epoch + 1,
            self._epochs, logs.get("loss", np.nan), GATE.name, value, self._best, self._best_epoch,
            self._epoch_seconds[-1],
            _minutes(left * per_epoch))

    def on_train_end(self, logs=None):
        if self._weights is not None:
            self.model.set_weights(self._weights)
        self.summary = {"epochs_run": len(self._epoch_seconds), "best_epoch": self._best_epoch,
                        "best_val_recall_at_10": round(float(self._best), 6), "stopped_by": self._reason,
                        "train_seconds": round(time.monotonic() - self._start, 1),
                        "epoch_seconds": [round(s, 1) for s in self._epoch_seconds]}
        logging.getLogger("ondevice_rec.trainer").info(
            "stopped after %d epochs by %s; kept epoch %d (val %s %.4f)", len(self._epoch_seconds),
            self._reason, self._best_epoch, GATE.name, self._best)


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


class WeightAverage:
    """Polyak averaging: an exponential moving average of the trainable weights, updated after every step.

    Validation (hence early stopping's choice and the exported model) sees the averaged weights; training
    continues from the raw ones. Keras callbacks run in list order, so ``begin`` goes before ``StopRule``
    (which records the averaged weights of its best epoch) and ``end`` after it.
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
        log_dir: Optional[str] = None, base_model_dir: Optional[str] = None,
        held_out_data: Optional[tf.data.Dataset] = None) -> keras.Model:
    """Builds and fits the model; keeps the weights of the epoch with the best eval recall@10 (history
    items excluded; ``eval_data`` may carry the rest of each user's seen movies as ``SEEN_INDEX``).

    ``held_out_data``: every eval example (``eval_data`` may be a sample); once the successor table's strength
    is chosen, the table is recounted with their latest transitions (``successors.latest_pairs``).

    ``base_model_dir``: an exported model to warm-start from (skipped, with a warning, if it does not fit).
    The settings left to the data are resolved first (``ModelConfig.derive_from_data``); the training summary
    says how (``derived``).
    """
    log = logging.getLogger("ondevice_rec.trainer")
    config, derived = config.derive_from_data(vocab.size - 1, vocab.training_events)
    for name, reason in derived.items():
        log.info("derived from the data: %s %s", name, reason)
    pairs = training_pairs(train_data, config) if config.successors else None
    table = successors.successor_table([pairs], vocab.size, config.successors) if config.successors else None
    recommender = build_recommender(config, vocab, table)
    model = recommender.model
    if base_model_dir:
        try:
            warm_start.warm_start(model, vocab, base_model_dir)
        except ValueError as e:
            logging.getLogger("ondevice_rec.trainer").warning("warm start skipped: %s", e)
    counts = np.array([0] + [m.count for m in vocab.items], np.float64)
    fitted = compile_model(RecommenderTrainer(recommender, config, counts), config)
    stop_rule = StopRule(config)
    callbacks = [stop_rule]
    if config.weight_average_decay:
        average = WeightAverage(config.weight_average_decay)
        callbacks = [average.begin] + callbacks + [average.end]
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))
    steps = config.steps_per_epoch or None
    fitted.fit(train_data.repeat() if steps else train_data, epochs=config.epochs, steps_per_epoch=steps,
               validation_data=eval_data, callbacks=callbacks, verbose=0)
    history, curve = fitted.history, dict(fitted.history.history)
    if config.personal_history:
        derived["per-user state"] = choose_personal_strength(fitted, eval_data)
        log.info("per-user state: %s", derived["per-user state"])
    if table is not None:
        derived["successor table"] = choose_successor_strength(fitted, eval_data, table)
        if held_out_data is not None:
            recounted = successors.successor_table(
                [pairs] + [successors.latest_pairs(inputs[features.CONTEXT_INDEX], labels)
                           for inputs, labels in held_out_data.as_numpy_iterator()], vocab.size, config.successors)
            successor_layer(model).set_table(recounted)
            derived["successor table"] += (f"; exported with the held-out examples' latest transitions too "
                                           f"({int(np.count_nonzero(recounted)):,} entries)")
        log.info("successor table: %s", derived["successor table"])
    history.history = curve  # evaluate() starts a History of its own
    model.history = history
    model.training_summary = {**stop_rule.summary, "derived": derived}
    return model


def training_pairs(train_data: tf.data.Dataset, config: ModelConfig) -> Tuple[np.ndarray, np.ndarray]:
    """``(previous, following)`` index pairs of one pass over the training windows, each event pair once
    (``successors.training_pairs``), kept for the table's count and its recount with the held-out examples."""
    stride = config.default_train_stride()  # the windowing's train stride (PipelineConfig checks it)
    batches = [successors.training_pairs(inputs[features.CONTEXT_INDEX], labels, stride)
               for inputs, labels in train_data.as_numpy_iterator()]
    return (np.concatenate([b[0] for b in batches] or [np.zeros(0, np.int64)]),
            np.concatenate([b[1] for b in batches] or [np.zeros(0, np.int64)]))


def choose_strength(fitted: keras.Model, eval_data: tf.data.Dataset, layer, strengths) -> str:
    """Sets ``layer``'s strength (``set_strength``) to the one of ``strengths`` with the best eval recall@10 (the
    trained network's weights fixed; ties: the weaker); returns what was chosen and every strength's recall."""
    recall = {}
    for strength in strengths:
        layer.set_strength(strength)
        recall[strength] = float(fitted.evaluate(eval_data, verbose=0, return_dict=True)[GATE.name])
    best = max(recall, key=lambda s: (recall[s], -s))
    layer.set_strength(best)
    return (f"strength {best:g}{' (off)' if not best else ''} (eval {GATE.name} "
            + ", ".join(f"{s:g}: {r:.4f}" for s, r in recall.items()) + ")")


def choose_successor_strength(fitted: keras.Model, eval_data: tf.data.Dataset, table: np.ndarray) -> str:
    """The successor table's strength, of ``successors.STRENGTHS``; returns what the table holds and the
    choice."""
    chosen = choose_strength(fitted, eval_data, successor_layer(fitted.model), successors.STRENGTHS)
    return f"{int(np.count_nonzero(table[:, 0])):,} items with up to {table.shape[1]} successors; {chosen}"


def choose_personal_strength(fitted: keras.Model, eval_data: tf.data.Dataset) -> str:
    """The per-user state's strength, of ``personal.STRENGTHS`` (the successor table's still 0); at 0 the model
    is exported without the state's signatures."""
    return choose_strength(fitted, eval_data, personal_state_layer(fitted.model), personal.STRENGTHS)
