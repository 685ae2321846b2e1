"""The run and its front ends: scan, resolve, review, download, report; the CLI and the service."""
