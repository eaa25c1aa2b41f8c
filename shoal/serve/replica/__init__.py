"""Serving on more than one machine: the learner publishes its snapshots to a shared location
(``shelf.py``, ``publisher.py``); read replicas follow them and forward learning to the learner
(``follower.py``, ``leader.py``)."""
