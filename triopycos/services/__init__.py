"""The services layer: what a node runs on the network, over the transport
interface (``triopycos.transport``) and the sans-IO protocols (``triopycos.protocol``).

* ``listener``: accepts connections (as trio's ``serve_listeners``) and hands each
  to the peer supervisor;
* ``peers``: the peer supervisor (admission, dialling, handshakes, reconnecting,
  heartbeats, the table of live connections), with ``admission`` (who may be in a
  handshake) and ``handshakes`` (running one over a stream);
* ``peer``: one peer connection (its reader, writer and pending requests);
* ``discovery``: finding nodes by UDP broadcast and multicast;
* ``files/``: file transfer, both sides;
* ``timer``: timeouts of waits on the message path;
* ``limits``: ``Limits``, the bounds every service reads its own from;
* ``_failures``: how a failure a peer may have caused is logged.

Services catch the transport's mapped errors (``transport.errors``), never
``OSError``; their statistics are snapshots (``statistics()``) the node composes.
"""
