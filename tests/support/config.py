"""Configuration files for tests: everything under one temporary directory, loopback, port 0."""

from pathlib import Path

from postfach.config import LISTENER_NAMES, Config, load_config


def write_config(directory: Path, listeners=LISTENER_NAMES, extra: str = "") -> Path:
    """A config file with the data in directory/data and the named listeners on 127.0.0.1:0."""
    path = directory / "postfach.toml"
    listen = "\n".join(f'{name} = "127.0.0.1:0"' for name in listeners)
    path.write_text(f'data_dir = "data"\nhostname = "mail.example.com"\n{extra}\n[listen]\n{listen}\n')
    return path


def make_config(directory: Path, listeners=LISTENER_NAMES) -> Config:
    return load_config(write_config(directory, listeners), environ={})
