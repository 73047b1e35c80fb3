"""The pure core: a Machine per run takes events (`apply(event, now)`) and gives launches (`launches(now, slots)`).

No I/O, no clock, no threads: machine.py with its parts steering.py (commands),
waiting.py (timers, polls, deadlines) and rollback.py (undos); events.py (what
can happen, and Launch), timers.py (the one Timer), states.py (RunState,
StepState and the records' constructors), children.py (an `each` step's child runs).
"""
