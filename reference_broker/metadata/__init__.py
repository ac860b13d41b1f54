"""Cluster metadata: the records of the metadata log and the image they replay into."""
