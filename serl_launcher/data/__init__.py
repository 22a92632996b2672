"""Datasets and replay buffers for SERL: RLDS files on disk, transitions in memory."""
