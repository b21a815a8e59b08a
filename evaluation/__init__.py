"""Evaluating a trained encoder (spec section 7 and the paper's further evaluations): the exact
linear probe and feature averaging, the invariance measures, the evaluation flags and the JSON
summary. It sits above `models/`; the evaluation scripts at the top are thin callers of it."""
