"""Inference: ABRInference and export."""
