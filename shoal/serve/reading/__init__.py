"""How a request's records become a ``Batch`` and predictions: VW lines, JSON records, rows of a
schema model's table, and the compiled paths for JSON bodies and column tensors.
"""
