"""The live model: the service that answers and learns, its one learner thread applying the event
log in order, prediction batching, work taken off the event loop.
"""
