"""The services models come from: the one HTTP policy and how sources are written."""
