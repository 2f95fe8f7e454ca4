"""A corpus of corrupted inputs built from the sample collections at test time (nothing binary is committed)."""
