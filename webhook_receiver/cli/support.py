"""What every `callhook` command group shares: configuration errors as one readable line.

A command that needs the settings or the mapping files gets them here; a configuration
problem becomes click's "Error: ..." and exit status 1, never a traceback. The command
modules (``cli.py``, ``cli_dials.py``, ``cli_kwebbl.py``, ``cli_platforms.py``,
``cli_agents_discover.py``) each carried a copy of these few lines.
"""

from __future__ import annotations

import click

from worker.core.settings import ConfigError, Settings, get_settings
from worker.crm.mapping_files import MappingFiles


def settings_or_exit() -> Settings:
    """The validated settings, or exit with the reason they are not valid."""
    try:
        return get_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def mappings_or_exit(settings: Settings) -> MappingFiles:
    """The mapping files of MAPPINGS_DIR, or exit naming the file, key and reason."""
    from webhook_receiver.mapping import load_mappings  # the CLI's start stays light

    try:
        return load_mappings(settings.mappings_dir)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
