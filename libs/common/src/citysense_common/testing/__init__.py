"""Test support shared by tests/, bench/ and docker/e2e_containers.py; no service imports it.

Kept in the shared library only so that all three can import it the same way (they run as pytest modules, as
scripts and against the installed package); tests/common/test_webhook_receiver.py checks that no service's source
imports ``citysense_common.testing``.
"""
