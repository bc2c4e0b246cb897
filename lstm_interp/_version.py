"""The package's version, in a module of its own at the first stage: the manifests record it, and they are written
by every stage, so it cannot live in the top-level package, which comes after all of them."""

__version__ = "0.1.0"
