"""MovieLens readers, downloader and a synthetic generator that writes the real file formats."""
