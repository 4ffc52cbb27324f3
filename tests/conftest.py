"""Test configuration: the hypothesis profiles.

The ``ci`` profile (the default) is derandomized with a fixed example budget so a red run
reproduces bit for bit; set ``HYPOTHESIS_PROFILE=dev`` for a wider random search.
"""
import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, max_examples=40, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=200, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
