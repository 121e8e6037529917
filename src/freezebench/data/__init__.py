"""Data: a hub id or a local file/folder -> validated, tokenizable train/validation/test splits."""
