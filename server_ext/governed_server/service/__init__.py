"""The governance service's side: the store, the audit log and its checkpoints, approvals, kernel
credentials, the notifier and the API handlers. Under JupyterHub this runs as its own OS user
(``jupyter governance serve --hub``); on one machine it runs inside the user's server. Nothing here
imports :mod:`governed_server.single_user`."""
