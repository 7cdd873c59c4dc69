"""NIH ChestX-ray14 (PNG images, 14 NIH labels, no reports): tfds builder `chestxray14`."""
