"""Test setup: every test process sees 8 simulated CPU devices.

The flag must be set before jax initialises its backends, so it lives here rather than in a
fixture. Tests that need fewer devices build smaller meshes from `jax.devices()[:n]`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import jax  # noqa: E402

jax.config.update("jax_threefry_partitionable", True)
