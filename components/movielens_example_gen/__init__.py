"""MovieLensExampleGen: a FileBasedExampleGen whose executor reads the MovieLens layouts."""
