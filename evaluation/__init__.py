"""Evaluating a trained encoder (spec section 7 and the paper's further evaluations), above
`models/`; the evaluation scripts at the top are thin callers of it."""
