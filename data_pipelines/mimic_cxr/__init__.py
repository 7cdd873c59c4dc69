"""MIMIC-CXR (JPG images, CheXpert/NegBio labels, free-text reports): tfds builder `mimic_cxr`."""
