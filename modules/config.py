"""Model and training hyperparameters (TensorFlow-free, so the CLI and pipeline config import it cheaply).

``setting(default, help)`` declares a knob once, with its type (the default's), default and help text; the
CLI generates its flags from the fields that carry help (``pipeline/options.py``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Dict, Optional, Sequence, Tuple

from ondevice_rec.modules import encoders

ENCODERS = encoders.ENCODERS
SOFTMAX_MODES = ("full", "sampled", "auto")
# softmax="auto" (ModelConfig.derive_from_data): sampled above this many items, full below: on a 48K-item log a
# full-softmax epoch took several times a sampled one and learned less per minute; every log below ~20K items
# measured trained in full in under a minute an epoch (docs/results.md, "Figures behind code comments").
SAMPLED_SOFTMAX_ABOVE_ITEMS = 20_000
# embedding_dim=0 (derive_from_data): max_embedding_dim (EMBEDDING_DIM unless set), or for a catalogue whose int8
# model would pass
# ON_DEVICE_BYTES, the largest multiple of 8 that keeps the int8 item table (d bytes an item, plus its bias)
# and the successor table (4 bytes an entry) within it. The successor table comes first: it keeps
# `successors` entries an item (fewer, down to MIN_SUCCESSORS, where that would leave the embedding less than
# TABLE_MIN_EMBEDDING_DIM bytes an item): 16 entries and d=32 up to ~20K items, 16 and d=16 at 24K, 8 at 40K, 4 and
# d=16 at 55K. On the sparse shop logs the table's entries were worth more than embedding dimensions
# (docs/results.md, "The successor table").
EMBEDDING_DIM = 32
ON_DEVICE_BYTES = 2_000_000
MIN_EMBEDDING_DIM = 8
MIN_SUCCESSORS = 4
TABLE_MIN_EMBEDDING_DIM = 16
# max_embedding_dim above EMBEDDING_DIM is used where the log has at least this many training events an item:
# d=48 measured better than 32 on ML-1M-SAS (291 events an item), worse on ML-100K (59) and Amazon Toys (14),
# better on Yelp (16, whose on-device budget keeps d=32 anyway): a threshold from four logs (docs/results.md, "Presets").
DENSE_EVENTS_PER_ITEM = 100
LOSS_POSITION_MODES = ("all", "last", "auto")
# The per-user state is kept where the log has at least this many training events an item (else the model is
# trained and published without it, the windowing's earlier items unread): it helped the two dense MovieLens logs
# and cost recall on a large-catalogue log of short histories (docs/results.md, "The per-user state"). Events an
# item is what the Trainer knows; it stands in for the events a user.
PERSONAL_MIN_EVENTS_PER_ITEM = 40


def setting(default: Any, help: str, choices: Optional[Sequence[str]] = None, flag: bool = True):
    """A dataclass field with the metadata the CLI flags are generated from (``flag=False``: no flag, still
    settable with ``--hparam`` where the dataclass is ModelConfig)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "flag": flag})


MAX_HISTORY_LENGTH = 200
MAX_PERSONAL_HISTORY = 1000


class JsonFields:
    """JSON round trip of an options dataclass (how options objects cross the TFX boundary: one execution
    parameter each); unknown keys are refused, naming them."""

    KIND = "settings"  # how the error names the class's fields

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]):
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.KIND}: {', '.join(sorted(unknown))}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))


@dataclasses.dataclass
class ModelConfig(JsonFields):
    """Hyperparameters of the model and its training (one place; the pipeline passes it as custom_config)."""

    KIND = "model settings"

    encoder: str = setting("lstm", "context encoder", ENCODERS)
    # The one home of the history length N: the windowing options and the exported model take it from here.
    history_length: int = setting(10, "N, the number of previous items the model sees")
    embedding_dim: int = setting(0, "item and activity embedding size (0 = derived from the catalogue size)")
    # The derived size's ceiling on a dense log (at least DENSE_EVENTS_PER_ITEM training events an item; on a
    # sparser one EMBEDDING_DIM), lower where the catalogue's int8 model would pass ON_DEVICE_BYTES.
    max_embedding_dim: int = EMBEDDING_DIM
    hidden_layers: int = 0  # Dense(embedding_dim, relu) layers after the encoder
    # Activity features added to each history item's embedding: the item's categorical features (mean of
    # their values' embeddings, e.g. genres) and bucketised numeric features (e.g. year), looked up from the
    # vocabulary index inside the model, so an app passes indices only; ratings are an extra input when enabled.
    use_item_categories: bool = True
    use_item_numbers: bool = True
    use_ratings: bool = False
    label_categories: bool = False  # label tower: item embedding plus its first categorical feature's embedding
    # The label tower reuses the history item embedding table (as SASRec does): half the size, and better recall
    # on ML-100K for the LSTM and the Transformer (docs/results.md, "Figures behind the model's defaults").
    tie_embeddings: bool = True
    # The successor table (modules/successors.py): each item's top `successors` next items counted in the
    # training events, scored for the `successor_recent` most recent history items next to the embedding dot
    # product (0: none).
    successors: int = setting(16, "most frequent next items per item the model keeps and scores (0 = none; "
                                  "fewer where the on-device size budget needs)")
    successor_recent: int = 3
    # Encoder sizes.
    cnn_filters: tuple = (32, 64)
    cnn_kernel_size: int = 4
    transformer_blocks: int = 2
    transformer_heads: int = 2
    transformer_ffn_width: int = 2  # the feed-forward layer's width, in multiples of embedding_dim (SASRec: 1)
    # SASRec multiplies the item embeddings by sqrt(embedding_dim) before adding the position embeddings.
    transformer_scale_embeddings: bool = False
    dropout: float = 0.3
    # Training. "sampled": sampled softmax with log-Q correction (negatives drawn from the training
    # popularity), for catalogues far larger than MovieLens; "full": softmax over the whole vocabulary;
    # "auto": chosen from the catalogue size (derive_from_data).
    softmax: str = "auto"
    # "all": a loss at every history position of each training window (the target being the next item), as
    # SASRec trains on whole sequences; pair it with a windowing stride of about N/2 (the pipeline's default).
    # "last": only the window's label. "auto": the encoder's own rule (``LOSS_POSITIONS`` in its module of
    # ``modules/encoders/``: "last" for bag-of-words, "all" for the others).
    loss_positions: str = "auto"
    # With a loss at every position and the default stride s (N/2), windows overlap: each target sits in two
    # windows, with more history in the earlier one. True: a window's loss skips the positions an earlier
    # window holds (all but its last s; a user's first window, left-padded, keeps all), so each target is
    # trained on once per epoch with its longest history, at half the softmax cost.
    # Measured faster per step with recall within the seed spread (docs/results.md, "Figures behind code comments").
    loss_once_per_target: bool = True
    num_sampled: int = 500
    # A train target weighs 1 / u^user_balance in the loss, u being its user's train examples (the weights
    # normalised in each batch): 0 = every target the same, so heavy users dominate training; 1 = every user the
    # same, as the per-user test metrics count them.
    user_balance: float = setting(0.0, "weight of a user's training targets: 1 / (the user's training windows) "
                                       "to this power (0 = each target equal, 1 = each user equal)")
    # Each history item of a training window is deleted with this probability and the rest close up (the
    # target stays): the model also learns to predict when events are missing from the log.
    history_dropout: float = setting(0.0, "share of history items deleted at random from training windows")
    # Batches of 256 windows at lr 0.01 (from 64 at 0.005): the input parsing and per-step overhead amortised,
    # recall within one seed's spread (docs/results.md, "Figures behind code comments").
    learning_rate: float = setting(0.01, "Adam learning rate")
    # Training stops at the first of: `early_stopping_patience` epochs without a better eval recall@10, the
    # epoch cap, the time budget; the best epoch's weights are kept (training.StopRule).
    # A cap that plateaus reach first (docs/results.md, "Figures behind code comments").
    epochs: int = setting(30, "epoch cap (training stops earlier when eval recall@10 stops improving)")
    early_stopping_patience: int = setting(3, "epochs without a better eval recall@10 before training stops")
    max_train_minutes: float = setting(0.0, "training time budget in minutes, 0 = none (the best epoch so far "
                                            "is kept)")
    steps_per_epoch: int = 0  # 0: one pass over the training windows per epoch
    # The Trainer's per-epoch validation (early stopping, the kept epoch) ranks the whole catalogue for each
    # eval user: on a 44K-user, 48K-item log it took most of an epoch's time. It scores the first this-many eval
    # examples (one per user; 0 = all): recall@10 on 10,000 users has a standard error of at most 0.005
    # (docs/results.md, "Figures behind code comments"). The Evaluator still scores every user.
    validation_users: int = 10_000
    # Training windows per batch (each holds up to N targets with loss_positions=all).
    batch_size: int = setting(256, "training windows per batch")
    # Polyak averaging: validate, early-stop on and export a moving average of the weights, with per-step decay
    # min(decay, (1 + t) / (10 + t)) (short memory early on); 0 = the raw weights. Better test and eval recall on
    # ML-100K over four seeds (docs/results.md, "Figures behind the model's defaults").
    weight_average_decay: float = 0.999
    top_k: int = setting(100, "recommendations the TFLite model returns (capped at the catalogue size minus N)")
    # The per-user state the phone keeps (modules/personal.py): a decayed sum of the embeddings of every item
    # the user picked, and its weight; the model adds a projection of their ratio to its query. Training reads
    # each example's `personal_history` items older than its context (0: no state, no extra signatures);
    # `personal_decay` is the state's decay per pick (the weight left beyond the cap: decay^(history + N)).
    # A training window's state is zeroed with probability `personal_dropout`, so the model also learns to
    # recommend without one (a new user, "forget me", an app that keeps no state). The three values measured
    # best of two settings on ML-1M-SAS (docs/results.md, "The per-user state").
    personal_history: int = setting(100, "older items a training example folds into the per-user state "
                                         "(0 = no per-user state)")
    personal_decay: float = 0.98
    personal_dropout: float = 0.25
    # Below this many training events an item the state is left out (PERSONAL_MIN_EVENTS_PER_ITEM; 0: always kept).
    personal_min_events_per_item: int = PERSONAL_MIN_EVENTS_PER_ITEM
    seed: int = 0

    @classmethod
    def preset(cls, name: str, **given) -> "ModelConfig":
        """The settings of ``PRESETS[name]``, with ``given`` fields on top."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **given})

    def derive_from_data(self, items: int, events: int = 0) -> Tuple["ModelConfig", Dict[str, str]]:
        """The settings left to the data ("auto") resolved for a catalogue of ``items`` items with ``events``
        training events, and why, by setting (the run summary prints it; the Trainer records it in its ModelRun
        artifact)."""
        derived, reasons = self, {}
        per_item = ON_DEVICE_BYTES / max(items, 1) - 1  # bytes an item within the budget, less the int8 bias
        if self.embedding_dim == 0 and self.successors > MIN_SUCCESSORS:  # a size given: the budget is the user's
            kept = int(max(MIN_SUCCESSORS, min(self.successors, (per_item - TABLE_MIN_EMBEDDING_DIM) // 4)))
            if kept < self.successors:
                derived = dataclasses.replace(derived, successors=kept)
                reasons["successors"] = (f"{kept}: the table of {items:,} items beside a {TABLE_MIN_EMBEDDING_DIM}-d "
                                         f"embedding within {ON_DEVICE_BYTES:,} bytes")
        if self.embedding_dim == 0:
            per_item -= 4 * derived.successors
            step = math.lcm(MIN_EMBEDDING_DIM, self.transformer_heads)  # a multiple of 8 the heads divide
            ceiling, density = self.max_embedding_dim, events / max(items, 1)
            if ceiling > EMBEDDING_DIM and density < DENSE_EVENTS_PER_ITEM:
                ceiling = EMBEDDING_DIM
            dim = int(max(step, min(ceiling, per_item) // step * step))
            derived = dataclasses.replace(derived, embedding_dim=dim)
            if dim < ceiling:
                why = f"the int8 model of {items:,} items within {ON_DEVICE_BYTES:,} bytes"
            elif ceiling < self.max_embedding_dim:
                why = (f"the ceiling of a sparse log ({density:.0f} training events an item, < "
                       f"{DENSE_EVENTS_PER_ITEM} for max_embedding_dim {self.max_embedding_dim})")
            else:
                why = f"max_embedding_dim, the ceiling (the {items:,} items would fit the budget with more)"
                if self.max_embedding_dim > EMBEDDING_DIM:
                    why += f"; {density:.0f} training events an item, >= {DENSE_EVENTS_PER_ITEM}"
            reasons["embedding_dim"] = f"{dim}: {why}"
        if self.personal_history and events and events / max(items, 1) < self.personal_min_events_per_item:
            derived = dataclasses.replace(derived, personal_history=0)
            reasons["per-user state"] = (f"off: {events / max(items, 1):.0f} training events an item, < "
                                         f"{self.personal_min_events_per_item}")
        if self.softmax == "auto":
            sampled = items > SAMPLED_SOFTMAX_ABOVE_ITEMS
            derived = dataclasses.replace(derived, softmax="sampled" if sampled else "full")
            reasons["softmax"] = (f"{derived.softmax}: {items:,} items {'>' if sampled else '<='} "
                                  f"{SAMPLED_SOFTMAX_ABOVE_ITEMS:,}")
        return derived, reasons

    def default_train_stride(self) -> int:
        """Windowing stride for training windows: N/2 with a loss at every position (each target is then
        seen twice, once with at least N/2 items of history), every position otherwise."""
        return max(1, self.history_length // 2) if self.loss_at_every_position() else 1

    def loss_at_every_position(self) -> bool:
        """``loss_positions``, with "auto" resolved by the encoder's own rule (``LOSS_POSITIONS`` of its module)."""
        rule = encoders.get(self.encoder).LOSS_POSITIONS if self.loss_positions == "auto" else self.loss_positions
        return rule == "all"

    def __post_init__(self):
        self.cnn_filters = tuple(self.cnn_filters)
        encoders.check(self.encoder)
        if self.softmax not in SOFTMAX_MODES:
            raise ValueError(f"softmax must be one of {', '.join(SOFTMAX_MODES)}, got {self.softmax!r}")
        if self.loss_positions not in LOSS_POSITION_MODES:
            raise ValueError(f"loss_positions must be one of {', '.join(LOSS_POSITION_MODES)}, "
                             f"got {self.loss_positions!r}")
        if not 1 <= self.history_length <= MAX_HISTORY_LENGTH:
            raise ValueError(f"history_length must be within 1..{MAX_HISTORY_LENGTH}, got {self.history_length}")
        if not 0.0 <= self.user_balance <= 1.0:
            raise ValueError(f"user_balance must be in [0, 1], got {self.user_balance}")
        if not 0.0 <= self.history_dropout < 1.0:
            raise ValueError(f"history_dropout must be in [0, 1), got {self.history_dropout}")
        if self.successors < 0 or self.successor_recent < 1:
            raise ValueError(f"successors must be >= 0 and successor_recent >= 1, got {self.successors} and "
                             f"{self.successor_recent}")
        if self.validation_users < 0:
            raise ValueError(f"validation_users must be >= 0 (0 = all), got {self.validation_users}")
        if min(self.epochs, self.batch_size, self.top_k, self.early_stopping_patience) < 1 or self.embedding_dim < 0:
            raise ValueError("epochs, batch_size, top_k and early_stopping_patience must be >= 1, embedding_dim >= 0 "
                             "(0 = derived)")
        if self.max_embedding_dim < MIN_EMBEDDING_DIM:
            raise ValueError(f"max_embedding_dim must be >= {MIN_EMBEDDING_DIM}, got {self.max_embedding_dim}")
        if self.max_train_minutes < 0:
            raise ValueError(f"max_train_minutes must be >= 0, got {self.max_train_minutes}")
        if not 0.0 <= self.weight_average_decay < 1.0:
            raise ValueError(f"weight_average_decay must be in [0, 1), got {self.weight_average_decay}")
        if self.transformer_blocks < 1 or self.transformer_heads < 1 or self.transformer_ffn_width < 1:
            raise ValueError("transformer_blocks, transformer_heads and transformer_ffn_width must be >= 1")
        if not 0 <= self.personal_history <= MAX_PERSONAL_HISTORY:
            raise ValueError(f"personal_history must be within 0..{MAX_PERSONAL_HISTORY}, got {self.personal_history}")
        if not 0.0 < self.personal_decay < 1.0 or not 0.0 <= self.personal_dropout < 1.0:
            raise ValueError(f"personal_decay must be in (0, 1) and personal_dropout in [0, 1), got "
                             f"{self.personal_decay} and {self.personal_dropout}")
        if self.embedding_dim % self.transformer_heads:
            raise ValueError("embedding_dim must be divisible by transformer_heads")

    def with_overrides(self, assignments, flag: str = "--hparam") -> "ModelConfig":
        """Applies ``["key=value", ...]`` (typed like the fields: bools as true/false, tuples comma-separated);
        an error names ``flag``, the option the assignments came from."""
        values = dataclasses.asdict(self)
        fields = {f.name: f for f in dataclasses.fields(self)}
        for assignment in assignments:
            key, sep, raw = assignment.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in fields:
                raise ValueError(f"{flag} expects KEY=VALUE with KEY one of: {', '.join(sorted(fields))}; "
                                 f"got {assignment!r}")
            current = values[key]
            try:
                if isinstance(current, bool):
                    if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(raw)
                    values[key] = raw.lower() in ("true", "1", "yes")
                elif isinstance(current, tuple):
                    values[key] = tuple(int(x) for x in raw.split(","))
                else:
                    values[key] = type(current)(raw)
            except ValueError as e:
                raise ValueError(f"{flag} {key}: cannot read {raw!r} as {type(current).__name__}") from e
        return type(self)(**values)


# Named model settings (`--preset NAME`; flags and --hparam given beside a preset win over it). Measured figures
# of each: docs/results.md ("Presets").
DEFAULT_PRESET = "default"
PRESETS: Dict[str, Dict[str, Any]] = {
    DEFAULT_PRESET: {},
    # For those who can wait: embeddings up to 48 wide instead of 32 on a dense log (DENSE_EVENTS_PER_ITEM; still
    # within the on-device budget), and training until 6 epochs bring no better eval recall@10, within 30 minutes.
    # Slower on the device than the default (docs/results.md, "Presets"), so not the default.
    "quality": dict(max_embedding_dim=48, early_stopping_patience=6, epochs=100, max_train_minutes=30.0),
}
