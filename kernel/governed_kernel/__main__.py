"""Entry point of the kernel process: ``python -m governed_kernel -f CONNECTION_FILE``."""

from governed_kernel import _startup  # noqa: F401  (first: a faster jsonschema import, see _startup)
from governed_kernel.app import launch_new_instance

if __name__ == "__main__":
    launch_new_instance()
