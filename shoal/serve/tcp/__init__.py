"""The TCP line server: Vowpal Wabbit's daemon protocol."""
