"""SASRec-style Transformer: learned positions, causal pre-norm self-attention blocks."""

LOSS_POSITIONS = "all"


def encode(config, x, mask):
    import tf_keras as keras
    from ondevice_rec.modules.layers import CausalPaddingMask, PositionEmbedding
    d = config.embedding_dim
    if config.transformer_scale_embeddings:
        x = keras.layers.Rescaling(d ** 0.5, name="embedding_scale")(x)
    x = PositionEmbedding(name="positions")(x)
    attention_mask = CausalPaddingMask(name="attention_mask")(mask)
    for b in range(config.transformer_blocks):
        normed = keras.layers.LayerNormalization(name=f"norm_a{b}")(x)
        attended = keras.layers.MultiHeadAttention(
            config.transformer_heads, d // config.transformer_heads, dropout=config.dropout,
            name=f"attention_{b}")(normed, x, attention_mask=attention_mask)
        x = x + keras.layers.Dropout(config.dropout)(attended)
        hidden = keras.layers.Dense(config.transformer_ffn_width * d, activation="relu", name=f"ffn_{b}_in")(
            keras.layers.LayerNormalization(name=f"norm_f{b}")(x))
        x = x + keras.layers.Dropout(config.dropout)(keras.layers.Dense(d, name=f"ffn_{b}_out")(hidden))
    return keras.layers.LayerNormalization(name="norm_out")(x)
