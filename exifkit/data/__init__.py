"""Data in: manifests, fetching and verification, archives, and the one safe image loader."""
