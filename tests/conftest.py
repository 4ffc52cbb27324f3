"""Test configuration: the hypothesis profiles.

The ``ci`` profile (the default) is derandomized with a fixed example budget so a red run
reproduces bit for bit; set ``HYPOTHESIS_PROFILE=dev`` for a wider random search. The
``grading`` profile (used by ``tinyapprox course grade``) skips the slow explain phase.
"""
import os

from hypothesis import HealthCheck, Phase, settings

settings.register_profile(
    "ci", derandomize=True, max_examples=40, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=200, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(  # `tinyapprox course grade`: like ci, but a failure is shrunk once and not explained
    "grading", derandomize=True, max_examples=40, deadline=None, print_blob=False, report_multiple_bugs=False,
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink), database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
