"""The executor port (port.py: Task, Outcome, Channel, Executor) and its implementations.

threads.py runs tasks in threads of the driver's process (the default);
processes.py in child processes that receive them as msgpack (child.py,
frames.py). Every implementation calls perform.py to run action code.
"""
