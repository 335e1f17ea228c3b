"""The side of the server that faces the analyst's kernels: the inbound and outbound guards, the
hardened defaults, the kernel jail and provisioner, batch runs, and client mode (the remote service
a single-user server talks to under JupyterHub)."""
