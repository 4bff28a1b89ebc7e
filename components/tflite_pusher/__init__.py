"""TFLitePusher: converts a blessed model to TFLite, checks parity and publishes it atomically."""
