"""Built-in engines, one backend per file; each registers through the `imagine.engines` entry points."""
