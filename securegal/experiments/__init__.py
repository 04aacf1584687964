"""Experiments that train federations to measure them (active attacks); built on ``securegal.train``."""
