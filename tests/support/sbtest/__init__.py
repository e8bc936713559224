"""Shared helpers for streambed's tests: real servers and clients started on demand."""
