"""Metrics, relabel targets, prune orders and figures: arrays in, arrays or figures out."""
