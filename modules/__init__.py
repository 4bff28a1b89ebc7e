"""Trainer module code: features, vocabulary, encoders, model, export. No TFX imports here."""
