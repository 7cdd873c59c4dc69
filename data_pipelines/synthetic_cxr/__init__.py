"""Synthetic paired chest X-ray dataset: numpy generator and its tfds builder.

`generator` has no TensorFlow dependency; import `synthetic_cxr` (the builder) only where
TensorFlow is available.
"""
