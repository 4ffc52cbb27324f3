"""Bundled datasets (installed as ``tinyapprox.bundled_data``); see README.md here for provenance."""
