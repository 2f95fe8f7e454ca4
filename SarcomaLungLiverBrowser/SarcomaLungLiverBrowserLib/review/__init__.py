"""Annotation review: the verdict store, the QA engine, reports and the review command line."""
