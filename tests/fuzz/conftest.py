"""Fuzzing with hypothesis (issue 15): every input to a parser or a public argument check gives a
result or the documented exception, never another one.

A fixed profile keeps CI deterministic and the whole directory under a minute: derandomized (the
same examples on every run), no example database, no deadline (shared machines are noisy).
Set HYPOTHESIS_PROFILE=fuzz-long for a longer, randomized local run.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("fuzz-ci", max_examples=150, derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("fuzz-long", max_examples=5000, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fuzz-ci"))
