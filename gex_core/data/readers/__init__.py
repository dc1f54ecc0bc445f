"""Readers of the data sets users have on disk, one module per file format; each image
reader has `required_files(name, data_dir)` and `load(name, data_dir)`.

Nothing here imports another reader (`gex_core.data.load` picks one by name), so a
workflow stage's code fingerprint holds only the reader of its data set.
"""
