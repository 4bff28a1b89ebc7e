"""LSTM over the oldest-first history (padding, on the left, is read first)."""

LOSS_POSITIONS = "all"


def encode(config, x, mask):
    import tf_keras as keras
    # Unrolled over the fixed N: converts to plain builtin ops that match the SavedModel to ~1e-7 (the fused
    # UNIDIRECTIONAL_SEQUENCE_LSTM drifted in score once trained: docs/results.md, "Figures behind the model's defaults").
    return keras.layers.LSTM(config.embedding_dim, return_sequences=True, unroll=True, name="lstm_encoder")(x)
