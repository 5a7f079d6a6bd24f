"""Whether W&B has an API key, looked up where wandb.init looks for one, without the network.

W&B's own lookup (wandb 0.31): its settings files and WANDB_* variables (mode, base URL, key),
WANDB_IDENTITY_TOKEN_FILE, then the netrc entry for the base URL that ``wandb login`` writes. It reads
a fresh Settings, not W&B's process-wide one, which would freeze the WANDB_* variables the tracker sets
later.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _settings() -> Any:
    """W&B's settings as wandb.init would read them now (files, then environment)."""
    from wandb.sdk.wandb_settings import Settings

    settings = Settings()
    config_dir = os.environ.get("WANDB_CONFIG_DIR")
    system = Path(config_dir).expanduser() / "settings" if config_dir else Path("~/.config/wandb/settings").expanduser()
    settings.settings_system = str(system)
    settings.update_from_system_settings()
    settings.update_from_env_vars(dict(os.environ))
    return settings


def _has_key(settings: Any) -> bool:
    from wandb.sdk.lib import wbauth

    if settings.api_key or os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    return wbauth.read_netrc_auth(host=settings.base_url) is not None


def wandb_key_found() -> bool:
    """Whether wandb.init would find an API key (in any mode); False when the lookup itself fails."""
    try:
        return _has_key(_settings())
    except Exception:  # no wandb, a malformed netrc, or a lookup that changed: no key found
        return False


def wandb_lacks_a_key() -> bool:
    """Whether W&B is online with no API key, which stops wandb.init at train begin. When the lookup
    itself fails, the verdict is left to wandb.init."""
    try:
        settings = _settings()
        return settings.mode not in ("offline", "dryrun", "disabled") and not _has_key(settings)
    except Exception:  # no wandb, or its lookup changed: wandb.init will say what is wrong
        return False
