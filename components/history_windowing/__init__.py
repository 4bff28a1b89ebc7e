"""History windowing: rating events -> (recent history -> next movie) examples + the movie vocabulary."""
