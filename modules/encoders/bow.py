"""Bag of words: the mean of the activity embeddings up to each position."""

# A prefix mean over a few items is a poor query at the early positions: train on the window's label only.
LOSS_POSITIONS = "last"


def encode(config, x, mask):
    from ondevice_rec.modules.layers import PrefixMean
    return PrefixMean(name="bow_encoder")(x, mask)
