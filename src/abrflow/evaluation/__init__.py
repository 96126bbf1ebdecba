"""Evaluation: metrics, classical baselines, generation quality, reports."""
