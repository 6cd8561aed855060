"""Experiment configs: ``default.py`` holds every field; one file per experiment of the paper."""
