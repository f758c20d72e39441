"""Provisioning and the embedded AWS: everything mk1 needs to exist before a call."""
