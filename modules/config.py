"""Model and training hyperparameters (TensorFlow-free, so the CLI and pipeline config import it cheaply)."""

from __future__ import annotations

import dataclasses
import json
from typing import Dict


@dataclasses.dataclass
class ModelConfig:
    """Hyperparameters of the model and its training (one place; the pipeline passes it as custom_config)."""

    encoder: str = "bow"
    history_length: int = 10
    embedding_dim: int = 32
    hidden_layers: int = 2
    learning_rate: float = 0.005
    epochs: int = 10
    batch_size: int = 256
    early_stopping_patience: int = 2
    top_k: int = 100
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, values: Dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown model settings: {', '.join(sorted(unknown))}")
        return cls(**values)
