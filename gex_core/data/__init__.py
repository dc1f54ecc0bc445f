"""Data sets in memory, readers of the files users have, label noise."""
