"""EXIF labels: reading and normalising tags, the 14 pretext targets, vocabularies and the EXIF card."""
