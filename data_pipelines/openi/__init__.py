"""OpenI / Indiana University chest X-ray collection (PNG images, XML reports): builder `openi`."""
