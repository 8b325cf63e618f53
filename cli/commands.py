"""Imports every command module so that each registers its commands on the app."""

# One import per command module; keep the list sorted.
import cli.ablate  # noqa: F401
import cli.cache  # noqa: F401
import cli.check_data  # noqa: F401
import cli.demo  # noqa: F401
import cli.evaluate  # noqa: F401
import cli.extract  # noqa: F401
import cli.predict  # noqa: F401
import cli.report  # noqa: F401
import cli.train  # noqa: F401
