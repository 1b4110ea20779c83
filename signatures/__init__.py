"""Rule files (YARA, Sigma, YAML) shipped as package data; see the folder's README."""
