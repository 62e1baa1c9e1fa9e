"""One hypothesis profile for the adversarial-input unit tests.

Bounded and without deadlines: the machine is shared, and a test of "never an
untyped exception" must not fail because another job took the CPU.
"""

from hypothesis import HealthCheck, settings

fuzz = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
