"""Handlers a single-user server adds in front of jupyter_server's own: guarded file routes, kernel
ownership and the relay of the governance API to a shared service."""
