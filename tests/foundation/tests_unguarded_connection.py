"""A kernel websocket connection class a user's config might name: jupyter_server's own, unguarded."""

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection


class UnguardedConnection(ZMQChannelsWebsocketConnection):
    """Forwards kernel traffic as it is: no inbound gate, no outbound masking."""
