"""Causal CNN: causal Conv1D layers (``cnn_filters``, ``cnn_kernel_size``) and a prefix max-pool."""

LOSS_POSITIONS = "all"


def encode(config, x, mask):
    import tf_keras as keras
    from ondevice_rec.modules.layers import PrefixMax
    for i, filters in enumerate(config.cnn_filters):
        x = keras.layers.Conv1D(filters, min(config.cnn_kernel_size, config.history_length), padding="causal",
                                activation="relu", name=f"conv_{i}")(x)
    return PrefixMax(name="cnn_max_pool")(x, mask)
