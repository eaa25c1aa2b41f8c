"""What must survive a crash: the event log, the features kept for feedback, the sequence mark,
snapshots and versions, recovery, the state directory, the models a server may load.
"""
