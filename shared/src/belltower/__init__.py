"""Belltower's common package: the contracts every service shares.

Services import from here and never from each other: settings, message and API types,
subject names, the schedule engine, the job-type SDK and the worker runtime.
"""

__version__ = "0.1.0"
