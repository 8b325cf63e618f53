"""Shared fixtures: generated videos, tiny models, toy stores. Each block below is owned by one area; add, don't reorder."""
