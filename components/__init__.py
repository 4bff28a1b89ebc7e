"""Custom TFX components: MovieLens ingestion, history windowing and the TFLite publisher."""
