"""``--sandbox STATE.yaml``: an embedded, in-process AWS (moto) seeded from a YAML file.

- :mod:`.state`: the state file, parsed and validated into frozen values;
- :mod:`.moto_extensions`: what moto lacks, added in-process, and the setters that give
  its resources what AWS would report;
- :mod:`.seed`: the state created in the emulator, and written back (``--sandbox-save``);
- :mod:`.run`: :func:`running_sandbox`, the emulator for one command.
"""

from .moto_extensions import (
    ENABLED_REGIONS,
    IMAGE_BLOCK_PUBLIC_ACCESS,
    IMAGE_USAGE_REPORTS,
    RECYCLE_BIN,
    encrypt_image,
    install_moto_extensions,
    make_aws_managed,
    set_image_dates,
    set_image_id,
    set_image_state,
    set_key_id,
    set_snapshot_id,
)
from .run import running_sandbox
from .seed import dump, seed
from .state import (
    AWS_MANAGED_KEY,
    SandboxImage,
    SandboxKey,
    SandboxState,
    load_sandbox,
    parse_sandbox,
)

__all__ = [
    "AWS_MANAGED_KEY",
    "ENABLED_REGIONS",
    "IMAGE_BLOCK_PUBLIC_ACCESS",
    "IMAGE_USAGE_REPORTS",
    "RECYCLE_BIN",
    "SandboxImage",
    "SandboxKey",
    "SandboxState",
    "dump",
    "encrypt_image",
    "install_moto_extensions",
    "load_sandbox",
    "make_aws_managed",
    "parse_sandbox",
    "running_sandbox",
    "seed",
    "set_image_dates",
    "set_image_id",
    "set_image_state",
    "set_key_id",
    "set_snapshot_id",
]
