"""netwatch: catch a remote-access scam while it happens, on a home network."""

__version__ = "0.1.0"
