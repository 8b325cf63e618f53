"""Imports every command module so that each registers its commands on the app."""

# One import per command module; keep the list sorted.
import mdmf.cli.ablate  # noqa: F401
import mdmf.cli.cache  # noqa: F401
import mdmf.cli.check_data  # noqa: F401
import mdmf.cli.compare  # noqa: F401
import mdmf.cli.demo  # noqa: F401
import mdmf.cli.evaluate  # noqa: F401
import mdmf.cli.extract  # noqa: F401
import mdmf.cli.import_checkpoint  # noqa: F401
import mdmf.cli.predict  # noqa: F401
import mdmf.cli.report  # noqa: F401
import mdmf.cli.splits  # noqa: F401
import mdmf.cli.train  # noqa: F401
