"""Tiny fake source trees in each real dataset's exact layout, for tests.

Each `write_*` function writes a handful of images with the messy cases of the real data
(corrupt files, missing reports or labels, odd CSV headers) and returns what a correct
build must contain: `Expected(examples={image_id: ...}, skipped={reason: count}, ...)`.
Images are random noise of a non-square size, so resizing and cropping are exercised.
"""
