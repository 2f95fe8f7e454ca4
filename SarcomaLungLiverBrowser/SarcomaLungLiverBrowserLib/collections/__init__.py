"""One module per collection; each defines ``COLLECTIONS``, a list of Collection classes."""
