"""One module per family of commands; each registers its handlers with `session.handles`."""

import importlib

MODULES = ("connection", "mailboxes", "listing", "select", "append", "fetch", "store_flags", "search", "copy_move")


def load_all() -> None:
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}")
