"""Tessera's KES-compatible key server (`python -m kes`) and the client pool gateways use."""

__version__ = "0.1.0"
