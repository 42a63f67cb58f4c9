"""The folder source: a folder of files mirrored to blocks."""
